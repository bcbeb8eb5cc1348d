//! Who may do what on a shared NATS: the users of a reco deployment by role,
//! with the publish and subscribe permissions each role needs and nothing
//! more (issue 11). [`crate::ServerConfig::roles`] renders them as the
//! server's `authorization { users = [...] }` block; `reco nats-config
//! --roles` prints it and `examples/nats/roles.conf` is its output.
//!
//! ```text
//! role      user            publishes                                   subscribes
//! node      reco-node       <prefix>.> (not the model notice, not the    <prefix>.>, _INBOX.>,
//!                           state-changing admin subjects), _INBOX.>,   $SRV.>
//!                           JetStream API/acks/KV (not the model bucket)
//! producer  reco-producer   <prefix>.events.* (and .p.events.*.*),       own inbox
//!                           own inbox (its round trip)
//! caller    reco-caller     <prefix>.recommend.* (and .p.recommend.*.*), own inbox
//!                           <prefix>.fallback.recommend.*, own inbox
//! operator  reco-operator   <prefix>.admin.>, <prefix>.node.*.admin.>,   own inbox
//!                           $SRV.> (reco cluster), own inbox
//! trainer   reco-trainer    the model bucket's object store and API,     own inbox
//!                           <prefix>.published.model, reading the event
//!                           stream, own inbox
//! ```
//!
//! A role's own inbox is `_INBOX.reco-<role>.>`: its clients connect with
//! that inbox prefix ([`Role::inbox_prefix`]), so a producer cannot read the
//! replies to callers, nor a caller the operator's.
//!
//! nats-server 2.9 checks publish permissions on the subject *after* the
//! partition mapping (`-ERR 'Permissions Violation for Publish to
//! "reco.p.recommend.2.3"'` for a caller allowed only `reco.recommend.*`),
//! so producers and callers are also allowed the partitioned form of their
//! own subject (`<prefix>.p.events.*.*`, `<prefix>.p.recommend.*.*`): a
//! message published there directly is what the mapping would have made of
//! one on the public subject (tests/roles.rs runs on the server it finds).
//!
//! Passwords are never written in the file: each user's password is the
//! configuration variable `$RECO_PASSWORD_<ROLE>`, which nats-server takes
//! from a variable defined earlier in the file (e.g. an `include`d secrets
//! file) or from its environment, and may be a bcrypt hash (`nats server
//! passwd`); nats-server 2.9 refuses a variable defined in the file that
//! nothing uses. A role given an NKey public key authenticates with it
//! instead.

use reco_messages::Subjects;
use std::fmt::{self, Write as _};
use std::str::FromStr;

/// A role of a reco deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// `reco serve` (and `reco nearline`): subscribes the deployment's
    /// traffic, replies, keeps its leases, reads the model bucket.
    Node,
    /// Publishes member events, nothing else.
    Producer,
    /// Requests recommendations (the partitioned and the fallback subject)
    /// and reads the replies, nothing else.
    Caller,
    /// The admin subjects: health, tree, faults, model pin, reload.
    Operator,
    /// Publishes model versions: the model bucket and its notice; reads the
    /// event stream to train.
    Trainer,
}

impl Role {
    /// Every role, in the order they are rendered.
    pub const ALL: [Role; 5] = [
        Role::Node,
        Role::Producer,
        Role::Caller,
        Role::Operator,
        Role::Trainer,
    ];

    /// The role's name (`node`, `producer`, …).
    pub fn name(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Producer => "producer",
            Role::Caller => "caller",
            Role::Operator => "operator",
            Role::Trainer => "trainer",
        }
    }

    /// The user name of the role (`reco-<role>`).
    pub fn user(self) -> String {
        format!("reco-{}", self.name())
    }

    /// The server configuration variable holding the role's password
    /// (`RECO_PASSWORD_<ROLE>`).
    pub fn password_variable(self) -> String {
        format!("RECO_PASSWORD_{}", self.name().to_ascii_uppercase())
    }

    /// The prefix of the role's reply inboxes (`_INBOX.reco-<role>`; the
    /// node's: `_INBOX`): clients of the role connect with it
    /// (`nats.inbox_prefix`, `--nats-inbox-prefix`), and the permissions
    /// let each role subscribe only to its own, so no user reads another's
    /// replies.
    pub fn inbox_prefix(self) -> String {
        match self {
            Role::Node => "_INBOX".into(),
            role => format!("_INBOX.{}", role.user()),
        }
    }

    /// What the role may publish and subscribe in `deployment`.
    pub fn permissions(self, deployment: &Deployment) -> Permissions {
        let prefix = deployment.subjects.prefix();
        let bucket = &deployment.model_bucket;
        let stream = &deployment.events_stream;
        // The node replies to every user's inbox; each other role reads
        // only its own.
        let inbox = || format!("{}.>", self.inbox_prefix());
        match self {
            Role::Node => Permissions {
                publish_allow: vec![
                    format!("{prefix}.>"),
                    inbox(),
                    "$JS.API.>".into(),
                    "$JS.ACK.>".into(),
                    "$JS.FC.>".into(),
                    "$KV.>".into(),
                    "$O.>".into(),
                ],
                publish_deny: vec![
                    deployment.subjects.published_model(),
                    deployment.subjects.admin_faults(),
                    deployment.subjects.admin_model(),
                    deployment.subjects.admin_reload(),
                    // The same verbs addressed to one node (`--node ID`).
                    format!("{prefix}.node.*.admin.faults"),
                    format!("{prefix}.node.*.admin.model"),
                    format!("{prefix}.node.*.admin.reload"),
                    format!("$O.{bucket}.>"),
                    format!("$JS.API.STREAM.CREATE.OBJ_{bucket}"),
                    format!("$JS.API.STREAM.UPDATE.OBJ_{bucket}"),
                    format!("$JS.API.STREAM.DELETE.OBJ_{bucket}"),
                    format!("$JS.API.STREAM.PURGE.OBJ_{bucket}"),
                    format!("$JS.API.STREAM.MSG.DELETE.OBJ_{bucket}"),
                ],
                // `$SRV.>`: the node is the NATS micro-service `reco`
                // (`reco cluster` asks `$SRV.STATS.reco`).
                subscribe_allow: vec![format!("{prefix}.>"), inbox(), "$SRV.>".into()],
            },
            Role::Producer => Permissions {
                publish_allow: vec![
                    deployment.subjects.events_wildcard(),
                    deployment.subjects.p_events_wildcard(),
                    inbox(),
                ],
                publish_deny: Vec::new(),
                subscribe_allow: vec![inbox()],
            },
            Role::Caller => Permissions {
                publish_allow: vec![
                    deployment.subjects.recommend_wildcard(),
                    deployment.subjects.p_recommend_wildcard(),
                    deployment.subjects.fallback_recommend_wildcard(),
                    inbox(),
                ],
                publish_deny: Vec::new(),
                subscribe_allow: vec![inbox()],
            },
            Role::Operator => Permissions {
                // Every node, one node (`--node ID`), and the micro-service
                // discovery `reco cluster` uses.
                publish_allow: vec![
                    format!("{prefix}.admin.>"),
                    format!("{prefix}.node.*.admin.>"),
                    "$SRV.>".into(),
                    inbox(),
                ],
                publish_deny: Vec::new(),
                subscribe_allow: vec![inbox()],
            },
            Role::Trainer => Permissions {
                publish_allow: vec![
                    deployment.subjects.published_model(),
                    inbox(),
                    // The object store of the versions: its chunks and
                    // metadata, and the API calls a put, get, list and
                    // delete make (stream OBJ_<bucket>).
                    format!("$O.{bucket}.>"),
                    format!("$JS.API.STREAM.*.OBJ_{bucket}"),
                    format!("$JS.API.STREAM.MSG.GET.OBJ_{bucket}"),
                    format!("$JS.API.DIRECT.GET.OBJ_{bucket}"),
                    format!("$JS.API.DIRECT.GET.OBJ_{bucket}.>"),
                    format!("$JS.API.CONSUMER.*.OBJ_{bucket}"),
                    format!("$JS.API.CONSUMER.*.OBJ_{bucket}.>"),
                    format!("$JS.API.CONSUMER.MSG.NEXT.OBJ_{bucket}.>"),
                    format!("$JS.FC.OBJ_{bucket}.>"),
                    // Reading the event stream (`reco train --from-stream`).
                    format!("$JS.API.STREAM.INFO.{stream}"),
                    format!("$JS.API.CONSUMER.*.{stream}"),
                    format!("$JS.API.CONSUMER.*.{stream}.>"),
                    format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.>"),
                    format!("$JS.FC.{stream}.>"),
                ],
                publish_deny: Vec::new(),
                subscribe_allow: vec![inbox()],
            },
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.name() == s)
            .ok_or_else(|| {
                format!("unknown role {s:?}: use node, producer, caller, operator or trainer")
            })
    }
}

/// What a deployment's permissions are about: its subjects, the bucket of
/// its model versions and its event stream.
#[derive(Clone, Debug)]
pub struct Deployment {
    /// The deployment's subjects (its prefix).
    pub subjects: Subjects,
    /// The object-store bucket of the model versions (`publish.bucket`).
    pub model_bucket: String,
    /// The JetStream event stream (`events_log.stream`).
    pub events_stream: String,
}

impl Default for Deployment {
    fn default() -> Self {
        Deployment {
            subjects: Subjects::default(),
            model_bucket: "reco_models".into(),
            events_stream: "RECO_EVENTS".into(),
        }
    }
}

/// The subjects a role may publish and subscribe to (a deny wins over an
/// allow; anything not allowed is refused).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permissions {
    /// Subjects the role may publish to.
    pub publish_allow: Vec<String>,
    /// Exceptions to `publish_allow`.
    pub publish_deny: Vec<String>,
    /// Subjects the role may subscribe to.
    pub subscribe_allow: Vec<String>,
}

/// How a role's user authenticates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// User `reco-<role>` with the password in `$RECO_PASSWORD_<ROLE>`.
    Password,
    /// The NKey whose public key is given (`U…`).
    NKey(String),
}

/// The users of every role of one deployment.
#[derive(Clone, Debug)]
pub struct RoleUsers {
    deployment: Deployment,
    credentials: Vec<(Role, Credential)>,
}

impl RoleUsers {
    /// Every role, each with a password user.
    pub fn new(deployment: Deployment) -> Self {
        RoleUsers {
            deployment,
            credentials: Role::ALL
                .into_iter()
                .map(|role| (role, Credential::Password))
                .collect(),
        }
    }

    /// `role` authenticates with the NKey `public_key` instead.
    ///
    /// # Errors
    /// When `public_key` is not a user NKey public key (`U` and 55 more
    /// base32 characters).
    pub fn nkey(mut self, role: Role, public_key: &str) -> Result<Self, String> {
        let ok = public_key.len() == 56
            && public_key.starts_with('U')
            && public_key
                .bytes()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b));
        if !ok {
            return Err(format!(
                "{public_key:?} is not a user NKey public key (56 characters starting with U, \
                 as `nk -gen user -pubout` prints)"
            ));
        }
        for (r, credential) in &mut self.credentials {
            if *r == role {
                *credential = Credential::NKey(public_key.to_owned());
            }
        }
        Ok(self)
    }

    /// The `authorization { users = [...] }` block.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# reco roles (prefix {:?}, model bucket {:?}, event stream {:?}).\n\
             # Passwords come from the variables $RECO_PASSWORD_<ROLE>: define them before this\n\
             # block (e.g. `include \"reco-secrets.conf\"`) or in nats-server's environment.",
            self.deployment.subjects.prefix(),
            self.deployment.model_bucket,
            self.deployment.events_stream
        );
        out.push_str("authorization {\n  users = [\n");
        for (role, credential) in &self.credentials {
            let permissions = role.permissions(&self.deployment);
            let _ = writeln!(
                out,
                "    # {role}: clients connect with inbox prefix {:?}",
                role.inbox_prefix()
            );
            out.push_str("    {\n");
            match credential {
                Credential::Password => {
                    let _ = writeln!(
                        out,
                        "      user: {}",
                        crate::nats_config::quoted(&role.user())
                    );
                    let _ = writeln!(out, "      password: ${}", role.password_variable());
                }
                Credential::NKey(key) => {
                    let _ = writeln!(out, "      nkey: {}", crate::nats_config::quoted(key));
                }
            }
            out.push_str("      permissions: {\n        publish: {\n");
            let _ = writeln!(out, "          allow: {}", list(&permissions.publish_allow));
            if !permissions.publish_deny.is_empty() {
                let _ = writeln!(out, "          deny: {}", list(&permissions.publish_deny));
            }
            out.push_str("        }\n        subscribe: {\n");
            let _ = writeln!(
                out,
                "          allow: {}",
                list(&permissions.subscribe_allow)
            );
            out.push_str("        }\n      }\n    }\n");
        }
        out.push_str("  ]\n}\n");
        out
    }
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| crate::nats_config::quoted(s))
        .collect();
    format!("[{}]", quoted.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_by_name() {
        for role in Role::ALL {
            assert_eq!(role.name().parse::<Role>(), Ok(role));
        }
        assert!("admin".parse::<Role>().is_err());
        assert_eq!(Role::Trainer.password_variable(), "RECO_PASSWORD_TRAINER");
    }

    #[test]
    fn each_role_publishes_only_its_own_subjects() {
        let deployment = Deployment::default();
        let producer = Role::Producer.permissions(&deployment);
        assert_eq!(
            producer.publish_allow,
            [
                "reco.events.*",
                "reco.p.events.*.*",
                "_INBOX.reco-producer.>"
            ]
        );
        assert_eq!(producer.subscribe_allow, ["_INBOX.reco-producer.>"]);
        assert!(Role::Node
            .permissions(&deployment)
            .subscribe_allow
            .contains(&"_INBOX.>".to_owned()));
        let caller = Role::Caller.permissions(&deployment);
        assert!(caller
            .publish_allow
            .contains(&"reco.fallback.recommend.*".to_owned()));
        assert!(!caller.publish_allow.iter().any(|s| s.contains("events")));
        let node = Role::Node.permissions(&deployment);
        for denied in [
            "reco.published.model",
            "reco.admin.model",
            "$O.reco_models.>",
        ] {
            assert!(node.publish_deny.contains(&denied.to_owned()), "{denied}");
        }
        let trainer = Role::Trainer.permissions(&deployment);
        assert!(trainer
            .publish_allow
            .contains(&"reco.published.model".to_owned()));
        assert!(!trainer.publish_allow.iter().any(|s| s.contains("admin")));
    }

    #[test]
    fn passwords_are_variables_and_nkeys_replace_them() {
        let key = format!("U{}", "A".repeat(55));
        let text = RoleUsers::new(Deployment::default())
            .nkey(Role::Producer, &key)
            .unwrap()
            .render();
        assert!(text.contains("password: $RECO_PASSWORD_NODE"));
        assert!(text.contains(&format!("nkey: \"{key}\"")));
        assert!(!text.contains("user: \"reco-producer\""));
        assert!(RoleUsers::new(Deployment::default())
            .nkey(Role::Caller, "SUAB")
            .is_err());
    }
}
