//! Guarded model notices end to end (issue 11): a node with
//! `publish.trusted_keys` refuses a notice for another bucket, an unsigned
//! version, a version signed by an unknown key and one whose signature does
//! not match its manifest — each counted by reason and logged while the old
//! version keeps serving — and swaps in a correctly signed one. The
//! trainer's key is made by `reco signing-key`.

use reco_e2e::{ask, reco_binary, Fixture, NatsServer, Node};
use reco_messages::metrics as nm;
use reco_messages::{encode, ModelPublished, RecommendReply, Subjects};
use reco_offline::artifacts;
use reco_offline::publish::{self, PublishConfig};
use reco_offline::signing::{ManifestSignature, SigningKey, SIGNATURE_OBJECT};
use std::path::Path;
use std::time::{Duration, Instant};

const BUCKET: &str = "models_signed";

async fn version_in_service(client: &async_nats::Client) -> Option<String> {
    NatsServer::admin(client)
        .health()
        .await
        .unwrap()
        .model_version
}

/// Publishes a fixture version `version` into `bucket`, signed with the key
/// in `key_file` when one is given.
async fn publish_version(
    client: &async_nats::Client,
    bucket: &str,
    version: &str,
    key_file: Option<&Path>,
) {
    let config = PublishConfig {
        bucket: bucket.into(),
        signing_key_file: key_file.map(Path::to_path_buf),
        ..PublishConfig::default()
    };
    let fixture = Fixture::write(300, 8, 20, version);
    let (model, lists) = artifacts::load(fixture.path()).unwrap();
    publish::publish(client, &Subjects::default(), &config, &model, &lists, 0.1)
        .await
        .unwrap();
}

/// Waits until `reason` was counted `count` times, then checks v1 still
/// serves (replies name it).
async fn refused(node: &Node, client: &async_nats::Client, reason: &str, count: f64) {
    let label = format!("reason=\"{reason}\"");
    node.wait_metric(Duration::from_secs(20), reason, |m| {
        reco_e2e::metric_sum(m, nm::MODEL_VERSIONS_REJECTED_TOTAL, &[&label]) >= count
    })
    .await;
    assert_eq!(version_in_service(client).await.as_deref(), Some("v1"));
    match ask(client, 3, 2_000).await {
        RecommendReply::Ok(reply) => {
            assert_eq!(reply.model_version.as_deref(), Some("v1"), "{reply:?}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_versions_signed_by_a_trusted_key_in_the_configured_bucket_are_swapped_in() {
    let keys = tempfile::tempdir().unwrap();
    let trainer_key = keys.path().join("trainer.key");
    let made = std::process::Command::new(reco_binary())
        .args(["signing-key", "--out", trainer_key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let public = String::from_utf8(made.stdout).unwrap().trim().to_owned();
    assert_eq!(
        public,
        SigningKey::from_file(&trainer_key).unwrap().public_hex()
    );
    let rogue_key = keys.path().join("rogue.key");
    let rogue = SigningKey::generate();
    rogue.write(&rogue_key).unwrap();

    let nats = NatsServer::start();
    let v1 = Fixture::write(300, 8, 20, "v1");
    let node = Node::start(
        &nats.url(),
        Some(v1.path()),
        &format!("[publish]\nbucket = \"{BUCKET}\"\ntrusted_keys = [\"{public}\"]\n"),
    );
    let client = nats.client().await;
    let subjects = Subjects::default();

    // A notice for a bucket of someone else's, even with a valid signature.
    publish_version(&client, "rogue_models", "v-foreign", Some(&trainer_key)).await;
    refused(&node, &client, "bucket", 1.0).await;

    // An unsigned version in the right bucket.
    publish_version(&client, BUCKET, "v-unsigned", None).await;
    refused(&node, &client, "unsigned", 1.0).await;

    // A version signed by a key the node does not trust.
    publish_version(&client, BUCKET, "v-rogue", Some(&rogue_key)).await;
    refused(&node, &client, "untrusted_key", 1.0).await;

    // The same version claiming the trusted key: the signature does not
    // match.
    let js = async_nats::jetstream::new(client.clone());
    let store = js.get_object_store(BUCKET).await.unwrap();
    let mut manifest = Vec::new();
    {
        use tokio::io::AsyncReadExt;
        store
            .get("v-rogue/manifest.json")
            .await
            .unwrap()
            .read_to_end(&mut manifest)
            .await
            .unwrap();
    }
    let forged = ManifestSignature {
        key: public.clone(),
        signature: rogue.sign(&manifest).signature,
    };
    let forged = serde_json::to_vec(&forged).unwrap();
    store
        .put(
            format!("v-rogue/{SIGNATURE_OBJECT}").as_str(),
            &mut forged.as_slice(),
        )
        .await
        .unwrap();
    let notice = ModelPublished {
        version: "v-rogue".into(),
        bucket: BUCKET.into(),
        published_at_ms: 0,
    };
    client
        .publish(subjects.published_model(), encode(&notice).into())
        .await
        .unwrap();
    refused(&node, &client, "bad_signature", 1.0).await;

    // An operator cannot pin an unsigned version either.
    let pin = NatsServer::admin(&client)
        .model(&reco_messages::admin::ModelCommand {
            pin: Some("v-unsigned".into()),
            unpin: false,
        })
        .await
        .unwrap();
    assert!(
        pin.error
            .as_deref()
            .is_some_and(|e| e.contains("not signed")),
        "{pin:?}"
    );
    refused(&node, &client, "unsigned", 2.0).await;

    // Correctly signed by the trainer: swapped in.
    publish_version(&client, BUCKET, "v2", Some(&trainer_key)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while version_in_service(&client).await.as_deref() != Some("v2") {
        assert!(
            Instant::now() < deadline,
            "v2 never served:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        node.metric(nm::MODEL_VERSIONS_REJECTED_TOTAL, &[]),
        5.0,
        "{}",
        node.metrics()
    );
    let log = node.log();
    for said in [
        "names another bucket",
        "not signed",
        "not in publish.trusted_keys",
        "does not match the manifest",
    ] {
        assert!(log.contains(said), "{said:?} not logged:\n{log}");
    }
}
