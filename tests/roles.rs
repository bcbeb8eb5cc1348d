//! Permissions by role on a real nats-server (issue 11): the server runs the
//! configuration `reco nats-config --roles` prints (with the partition
//! mapping), a node runs as `reco-node`, and each role is proven to do what
//! it must and nothing else: a producer cannot request or administer, a
//! caller cannot publish events or administer, only operators pin, reload
//! and set faults, only trainers publish models.
//!
//! What a role may not do is refused by the server: the message never
//! reaches anyone. A watcher connected as the node (which may subscribe to
//! every subject of the prefix) records what arrives, and the tests check
//! that no forbidden publication ever did.

use reco_client::{Admin, NatsSecurity, Secret};
use reco_e2e::{reco_binary, Fixture, NatsServer, Node};
use reco_messages::admin::{ModelCommand, SetFaults};
use reco_messages::{
    decode, encode, Event, EventKind, MemberId, ModelPublished, RecommendReply, RecommendRequest,
    Subjects,
};
use reco_offline::artifacts;
use reco_offline::publish::{self, PublishConfig};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PARTITIONS: u32 = 4;
const FORBIDDEN: &[u8] = b"forbidden";
const ROLES: [&str; 5] = ["node", "producer", "caller", "operator", "trainer"];

fn password(role: &str) -> String {
    format!("pw-{role}-S3cret")
}

/// The server configuration of the roles, from `reco nats-config --roles`
/// (the producer with an NKey, `--nkey producer=…`), with the passwords
/// defined as variables before it (as an `include`d secrets file would).
fn server_config(producer_key: &str) -> String {
    let nkey = format!("producer={producer_key}");
    let output = std::process::Command::new(reco_binary())
        .args([
            "nats-config",
            "--roles",
            "--fragment",
            "--partitions",
            &PARTITIONS.to_string(),
            "--nkey",
            &nkey,
        ])
        .output()
        .expect("cannot run reco nats-config");
    assert!(output.status.success(), "{output:?}");
    let rendered = String::from_utf8(output.stdout).unwrap();
    assert!(
        !rendered.contains("pw-"),
        "no password in the rendered file"
    );
    // Only the roles with a password: nats-server refuses a variable that
    // nothing uses ("unknown field").
    let mut config: String = ROLES
        .iter()
        .filter(|role| **role != "producer")
        .map(|role| {
            format!(
                "RECO_PASSWORD_{}: \"{}\"\n",
                role.to_ascii_uppercase(),
                password(role)
            )
        })
        .collect();
    config.push_str(&rendered);
    config
}

/// A client of `role`, with the role's inbox prefix (`_INBOX.reco-<role>`;
/// the node keeps `_INBOX`).
async fn connect(nats: &NatsServer, role: &str) -> async_nats::Client {
    nats.client_with(NatsSecurity {
        user: Some(format!("reco-{role}")),
        password: Some(Secret::new(password(role))),
        inbox_prefix: (role != "node").then(|| format!("_INBOX.reco-{role}")),
        ..Default::default()
    })
    .await
}

/// Every subject published under the prefix, as the node user sees it.
#[derive(Clone, Default)]
struct Watcher(Arc<Mutex<BTreeSet<Seen>>>);

/// A message as the watcher saw it: subject and payload.
type Seen = (String, Vec<u8>);

impl Watcher {
    async fn start(client: &async_nats::Client) -> Self {
        use futures::StreamExt;
        let watcher = Watcher::default();
        let mut all = client.subscribe("reco.>").await.unwrap();
        reco_client::round_trip(client).await.unwrap();
        let seen = watcher.0.clone();
        tokio::spawn(async move {
            while let Some(message) = all.next().await {
                seen.lock()
                    .unwrap()
                    .insert((message.subject.to_string(), message.payload.to_vec()));
            }
        });
        watcher
    }

    fn saw(&self, subject: &str) -> bool {
        self.saw_matching(|s| s == subject)
    }

    fn saw_matching(&self, check: impl Fn(&str) -> bool) -> bool {
        self.0.lock().unwrap().iter().any(|(s, _)| check(s))
    }

    /// The payloads seen on `subject`.
    fn payloads(&self, subject: &str) -> Vec<Vec<u8>> {
        let seen = self.0.lock().unwrap();
        seen.iter()
            .filter(|(s, _)| s == subject)
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// Subjects on which a forbidden publication arrived.
    fn forbidden(&self) -> Vec<String> {
        let seen = self.0.lock().unwrap();
        seen.iter()
            .filter(|(_, p)| p.as_slice() == FORBIDDEN)
            .map(|(s, _)| s.clone())
            .collect()
    }
}

fn event(member: u64, item: reco_messages::ItemId) -> Vec<u8> {
    encode(&Event {
        member: MemberId(member),
        item,
        kind: EventKind::Play,
        value: 600.0,
        at_ms: None,
        device: None,
    })
}

fn request() -> Vec<u8> {
    encode(&RecommendRequest {
        deadline_ms: Some(1_000),
        ..Default::default()
    })
}

/// A request that must go unanswered: the server drops what the role may
/// not publish, so it times out.
async fn unanswered(client: &async_nats::Client, subject: String, payload: Vec<u8>) {
    let asked = tokio::time::timeout(
        Duration::from_millis(1_500),
        client.request(subject.clone(), payload.into()),
    )
    .await;
    assert!(
        !matches!(asked, Ok(Ok(_))),
        "a request on {subject} was answered"
    );
}

/// Publishes what `client` may not, each on its subject.
async fn forbidden_publishes(client: &async_nats::Client, subjects: &[String]) {
    for subject in subjects {
        client
            .publish(subject.clone(), FORBIDDEN.to_vec().into())
            .await
            .unwrap();
    }
    // The client's own round trip: everything above reached the server.
    reco_client::round_trip(client).await.unwrap();
}

async fn answered(client: &async_nats::Client, subject: String) -> RecommendReply {
    let reply = client
        .request(subject.clone(), request().into())
        .await
        .unwrap_or_else(|e| panic!("{subject} was not answered: {e}"));
    decode(&reply.payload, 1 << 20).unwrap()
}

async fn version_in_service(operator: &async_nats::Client) -> Option<String> {
    Admin::new(operator.clone(), Subjects::default())
        .health()
        .await
        .unwrap()
        .model_version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_can_do_what_it_must_and_nothing_else() {
    let producer_key = nkeys::KeyPair::new_user();
    let seeds = tempfile::tempdir().unwrap();
    let producer_seed = seeds.path().join("producer.nk");
    std::fs::write(&producer_seed, producer_key.seed().unwrap()).unwrap();
    let nats = NatsServer::start_with_config(&server_config(&producer_key.public_key()));
    let subjects = Subjects::default();
    let v1 = Fixture::write(300, 8, 20, "v1");
    let node = Node::start(
        &nats.url(),
        Some(v1.path()),
        &format!(
            "[nats]\nuser = \"reco-node\"\npassword = \"{}\"\n\
             [node]\nshards = 1\nfault_injection = true\n[model]\nworkers = 1\n\
             [nearline]\nenabled = false\n\
             [cluster]\npartitions = {PARTITIONS}\nlease_ms = 1000\n",
            password("node")
        ),
    );
    assert!(
        node.log().contains("this node joins the cluster"),
        "{}",
        node.log()
    );
    let (watch, producer, caller, operator, trainer) = (
        connect(&nats, "node").await,
        nats.client_with(NatsSecurity {
            nkey_seed_file: Some(producer_seed.clone()),
            inbox_prefix: Some("_INBOX.reco-producer".into()),
            ..Default::default()
        })
        .await,
        connect(&nats, "caller").await,
        connect(&nats, "operator").await,
        connect(&nats, "trainer").await,
    );
    let watcher = Watcher::start(&watch).await;

    // Callers: the partitioned subject (once the node owns the partitions)
    // and the fallback subject are answered.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let asked = tokio::time::timeout(
            Duration::from_secs(2),
            caller.request(subjects.recommend(MemberId(3)), request().into()),
        )
        .await;
        if let Ok(Ok(reply)) = asked {
            assert!(matches!(
                decode::<RecommendReply>(&reply.payload, 1 << 20).unwrap(),
                RecommendReply::Ok(_)
            ));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the caller is never answered:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(matches!(
        answered(&caller, subjects.fallback_recommend(MemberId(3))).await,
        RecommendReply::Ok(_)
    ));

    // Producers: events go through (mapped to their partition) …
    producer
        .publish(subjects.events(MemberId(5)), event(5, v1.items[0]).into())
        .await
        .unwrap();
    reco_client::round_trip(&producer).await.unwrap();
    // … requests and admin do not.
    unanswered(&producer, subjects.recommend(MemberId(5)), request()).await;
    unanswered(
        &producer,
        subjects.fallback_recommend(MemberId(5)),
        request(),
    )
    .await;
    unanswered(&producer, subjects.admin_health(), Vec::new()).await;
    forbidden_publishes(
        &producer,
        &[
            subjects.admin_faults(),
            subjects.admin_reload(),
            subjects.admin_model(),
            subjects.published_model(),
            "reco.dlq.events".into(),
        ],
    )
    .await;

    // Producers cannot read the replies to callers (each role reads only
    // its own inboxes).
    {
        use futures::StreamExt;
        let mut sniff_all = producer.subscribe("_INBOX.>").await.unwrap();
        let mut sniff_callers = producer.subscribe("_INBOX.reco-caller.>").await.unwrap();
        reco_client::round_trip(&producer).await.unwrap();
        answered(&caller, subjects.recommend(MemberId(3))).await;
        for sub in [&mut sniff_all, &mut sniff_callers] {
            let got = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
            assert!(
                !matches!(got, Ok(Some(_))),
                "a producer read a caller's reply: {got:?}"
            );
        }
    }

    // Callers may not publish events, administer or announce models …
    forbidden_publishes(
        &caller,
        &[
            subjects.events(MemberId(6)),
            subjects.admin_faults(),
            subjects.admin_reload(),
            subjects.admin_model(),
            subjects.published_model(),
        ],
    )
    .await;
    unanswered(&caller, subjects.admin_health(), Vec::new()).await;
    // … nor listen on the request subjects to answer in the node's place.
    {
        use futures::StreamExt;
        let mut hijack = caller.subscribe("reco.>").await.unwrap();
        let mut requests = caller.subscribe("reco.recommend.*").await.unwrap();
        reco_client::round_trip(&caller).await.unwrap();
        answered(&caller, subjects.recommend(MemberId(3))).await;
        for sub in [&mut hijack, &mut requests] {
            let got = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
            assert!(!matches!(got, Ok(Some(_))), "a caller received {got:?}");
        }
    }

    // Operators: faults, reload, pin/unpin and reading go through.
    let admin = Admin::new(operator.clone(), subjects.clone());
    admin.faults(&SetFaults::default()).await.unwrap();
    assert_eq!(admin.reload().await.unwrap().error, None);
    let unpin = ModelCommand {
        pin: None,
        unpin: true,
    };
    assert_eq!(admin.model(&unpin).await.unwrap().error, None);
    assert_eq!(version_in_service(&operator).await.as_deref(), Some("v1"));
    // `reco cluster` (the micro-service discovery) and `--node ID`.
    let nodes = reco_client::cluster::nodes(&operator, &subjects, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(nodes.len(), 1, "the operator sees the node: {nodes:?}");
    let one = admin.clone().with_node(Some(nodes[0].node.clone()));
    assert_eq!(one.reload().await.unwrap().error, None);
    // Operators neither produce, ask nor announce models.
    forbidden_publishes(
        &operator,
        &[subjects.events(MemberId(7)), subjects.published_model()],
    )
    .await;
    unanswered(&operator, subjects.recommend(MemberId(3)), request()).await;
    // Nor do trainers or the node itself administer.
    for client in [&trainer, &watch, &producer, &caller] {
        let refused =
            Admin::new(client.clone(), subjects.clone()).with_timeout(Duration::from_millis(1_000));
        assert!(refused.faults(&SetFaults::default()).await.is_err());
        assert!(refused.reload().await.is_err());
        assert!(refused.model(&unpin).await.is_err());
        let addressed = refused.with_node(Some(nodes[0].node.clone()));
        assert!(addressed.reload().await.is_err());
        assert!(addressed.model(&unpin).await.is_err());
    }

    // Trainers: a version goes into the bucket and the node swaps it in.
    let config = PublishConfig::default();
    let v2 = Fixture::write(300, 8, 20, "v2");
    let (model, lists) = artifacts::load(v2.path()).unwrap();
    publish::publish(&trainer, &subjects, &config, &model, &lists, 0.1)
        .await
        .expect("a trainer publishes a model");
    let deadline = Instant::now() + Duration::from_secs(20);
    while version_in_service(&operator).await.as_deref() != Some("v2") {
        assert!(
            Instant::now() < deadline,
            "v2 never served:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Trainers read the event stream (`reco train --from-stream`); a
    // producer cannot.
    let logged = reco_offline::event_log::read_interactions(
        &async_nats::jetstream::new(trainer.clone()),
        "RECO_EVENTS",
        &subjects,
        1 << 20,
    )
    .await
    .expect("a trainer reads the event stream");
    assert!(logged.events >= 1, "the producer's event is in the stream");
    let sniffed = tokio::time::timeout(
        Duration::from_secs(15),
        reco_offline::event_log::read_interactions(
            &async_nats::jetstream::new(producer.clone()),
            "RECO_EVENTS",
            &subjects,
            1 << 20,
        ),
    )
    .await;
    assert!(
        !matches!(sniffed, Ok(Ok(_))),
        "a producer read the event stream"
    );
    // No other role can publish one: neither the bucket nor the notice.
    let v3 = Fixture::write(300, 8, 20, "v3");
    let (model3, lists3) = artifacts::load(v3.path()).unwrap();
    let attempts = [&watch, &producer, &caller, &operator].map(|client| {
        let (client, subjects, config) = (client.clone(), subjects.clone(), config.clone());
        let (model, lists) = (model3.clone(), lists3.clone());
        tokio::spawn(async move {
            tokio::time::timeout(
                Duration::from_secs(15),
                publish::publish(&client, &subjects, &config, &model, &lists, 0.1),
            )
            .await
        })
    });
    for attempt in attempts {
        assert!(
            !matches!(attempt.await.unwrap(), Ok(Ok(_))),
            "a role other than trainer published a model"
        );
    }
    for client in [&watch, &producer, &caller, &operator] {
        let forged = ModelPublished {
            version: "v1".into(),
            bucket: config.bucket.clone(),
            published_at_ms: 0,
        };
        client
            .publish(subjects.published_model(), encode(&forged).into())
            .await
            .unwrap();
        reco_client::round_trip(client).await.unwrap();
    }
    let js = async_nats::jetstream::new(trainer.clone());
    let store = js.get_object_store(&config.bucket).await.unwrap();
    let versions: Vec<String> = publish::published_versions(&store, &config.bucket)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(versions, ["v2"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(version_in_service(&operator).await.as_deref(), Some("v2"));

    // Everything forbidden never reached anyone; what is allowed did.
    reco_client::round_trip(&watch).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(watcher.saw_matching(|s| s.starts_with("reco.p.events.") && s.ends_with(".5")));
    assert!(watcher.saw(&subjects.admin_faults()));
    let notices = watcher.payloads(&subjects.published_model());
    assert_eq!(notices.len(), 1, "only the trainer's notice is delivered");
    let notice: ModelPublished = decode(&notices[0], 1 << 16).unwrap();
    assert_eq!(notice.version, "v2");
    assert_eq!(watcher.forbidden(), Vec::<String>::new());
    for member in [6, 7] {
        assert!(
            !watcher.saw_matching(
                |s| s.starts_with("reco.p.events.") && s.ends_with(&format!(".{member}"))
            ),
            "a forbidden event of member {member} was delivered"
        );
    }
    assert!(
        !watcher.saw("reco.dlq.events"),
        "the producer wrote the DLQ"
    );
    assert!(
        !watcher.saw_matching(|s| s.starts_with("reco.p.recommend.") && s.ends_with(".5")),
        "a producer's request was delivered"
    );
    assert!(
        !watcher.saw(&subjects.fallback_recommend(MemberId(5))),
        "a producer's fallback request was delivered"
    );
    assert!(!node.log().contains("S3cret"), "{}", node.log());
}
