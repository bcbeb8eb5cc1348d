//! The operator surface the node answers itself (the actors answer
//! `admin.health` and `admin.faults`): `<prefix>.admin.tree` with the live
//! supervision tree, and `<prefix>.admin.reload` or SIGHUP re-reading the
//! config file's supervision settings; and the process's memory gauge.

use crate::config::Config;
use crate::supervision::{GetTree, Reconfigure, Restart, Supervisor};
use actix::prelude::*;
use futures::StreamExt;
use reco_actors::breaker::{BreakerState, ModelBreaker};
use reco_messages::admin::{Reloaded, TreeNode};
use reco_messages::{encode, ErrorCode, ErrorReply, Subjects};
use std::path::PathBuf;

/// Answers `<prefix>.admin.tree` with the live supervision tree; the model
/// subtree's detail says the state of the breaker in front of it.
pub(super) async fn serve_tree(
    client: async_nats::Client,
    subjects: Subjects,
    root: Addr<Supervisor>,
    breaker: ModelBreaker,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut requests = client.subscribe(subjects.admin_tree()).await?;
    Ok(actix::spawn(async move {
        while let Some(message) = requests.next().await {
            let Some(reply) = message.reply else { continue };
            let tree = match root
                .send(GetTree {
                    restart: Restart::Permanent,
                })
                .await
            {
                Ok(mut tree) => {
                    show_breaker(&mut tree, breaker.state());
                    encode(&tree)
                }
                Err(_) => encode(&ErrorReply::new(
                    ErrorCode::Unavailable,
                    "the supervision tree is shutting down",
                )),
            };
            if let Err(error) = client.publish(reply, tree.into()).await {
                tracing::warn!(%error, "Tree reply could not be published.");
            }
        }
    }))
}

/// Writes the breaker's state into the detail of the tree's `model`
/// subtree (the online workers it stands in front of).
pub(super) fn show_breaker(tree: &mut TreeNode, state: BreakerState) {
    if let Some(model) = tree.children.iter_mut().find(|c| c.name == "model") {
        let breaker = format!("breaker {}", state.as_str());
        model.detail = Some(match model.detail.take() {
            Some(detail) => format!("{detail}, {breaker}"),
            None => breaker,
        });
    }
}

/// On every SIGHUP, or request on `<prefix>.admin.reload`, re-reads the
/// config file and applies its supervision settings to the running tree; an
/// invalid file is logged (and answered) and the settings in force stay.
pub(super) async fn reload_on_request(
    path: PathBuf,
    root: Addr<Supervisor>,
    client: async_nats::Client,
    subjects: Subjects,
    guard: reco_actors::guard::OperatorGuard,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup())
        .map_err(
            |error| tracing::warn!(%error, "Cannot listen for SIGHUP; use <prefix>.admin.reload."),
        )
        .ok();
    let mut requests = match client.subscribe(subjects.admin_reload()).await {
        Ok(requests) => Some(requests),
        Err(error) => {
            tracing::warn!(%error, "Cannot subscribe to the reload subject; use SIGHUP.");
            None
        }
    };
    loop {
        let reply = tokio::select! {
            Some(()) = async { hangups.as_mut()?.recv().await } => None,
            Some(message) = async { requests.as_mut()?.next().await } => {
                if !guard.allows(&message, "reload") {
                    let refused = Reloaded {
                        applied: Vec::new(),
                        error: Some(reco_actors::guard::REFUSED.into()),
                    };
                    if let Some(reply) = message.reply {
                        let _ = client.publish(reply, encode(&refused).into()).await;
                    }
                    continue;
                }
                Some(message.reply)
            }
            else => return,
        };
        let outcome = reload(&path, &root).await;
        if let Some(Some(reply)) = reply {
            if let Err(error) = client.publish(reply, encode(&outcome).into()).await {
                tracing::warn!(%error, "Reload reply could not be published.");
            }
        }
    }
}

async fn reload(path: &std::path::Path, root: &Addr<Supervisor>) -> Reloaded {
    let config = match Config::from_file(path).and_then(|c| c.validate().map(|()| c)) {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "Configuration not reloaded; the old one stays in force.");
            return Reloaded {
                applied: Vec::new(),
                error: Some(error.to_string()),
            };
        }
    };
    let sup = &config.supervision;
    let mut applied = Vec::new();
    for (name, subtree) in [
        ("root", &sup.root),
        ("model", &sup.model),
        ("nearline", &sup.nearline),
        ("sessions", &sup.sessions),
    ] {
        let found = root
            .send(Reconfigure {
                name: name.into(),
                settings: subtree.settings(),
            })
            .await
            .unwrap_or(false);
        if found {
            applied.push(name.to_owned());
        } else {
            tracing::warn!(
                supervisor = name,
                "Supervisor not found (restarting?); not reconfigured."
            );
        }
    }
    tracing::info!(path = %path.display(), "Supervision settings reloaded.");
    Reloaded {
        applied,
        error: None,
    }
}

/// The resident set size of this process, from `/proc/self/statm` (0 where
/// that cannot be read).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_subtree_says_the_breaker_state() {
        let mut tree = TreeNode {
            name: "root".into(),
            children: vec![
                TreeNode {
                    name: "model".into(),
                    ..Default::default()
                },
                TreeNode {
                    name: "sessions".into(),
                    detail: Some("3 resident".into()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        show_breaker(&mut tree, BreakerState::Open);
        assert_eq!(tree.children[0].detail.as_deref(), Some("breaker open"));
        assert_eq!(tree.children[1].detail.as_deref(), Some("3 resident"));
        tree.children[0].detail = Some("2 workers".into());
        show_breaker(&mut tree, BreakerState::HalfOpen);
        assert_eq!(
            tree.children[0].detail.as_deref(),
            Some("2 workers, breaker half_open")
        );
    }
}
