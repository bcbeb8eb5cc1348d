//! The `reco` command line as an operator meets it: errors that say what is
//! wrong and what to do, the effective configuration, training from a CSV.

use reco_e2e::reco_binary;
use std::process::{Command, Output};

fn reco(args: &[&str]) -> Output {
    Command::new(reco_binary())
        .args(args)
        .env_remove("RECO_NATS_URL")
        .output()
        .expect("cannot run reco")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn print_config_shows_every_default() {
    let output = reco(&["serve", "--print-config"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8(output.stdout).unwrap();
    for key in [
        "url = \"nats://127.0.0.1:4222\"",
        "prefix = \"reco\"",
        "default_deadline_ms = 50",
        "max_resident = 1000000",
        "idle_timeout_ms = 1800000",
        "workers = 2",
        "test_delay_ms = 0",
        "fault_injection = false",
    ] {
        assert!(text.contains(key), "missing {key} in:\n{text}");
    }
}

#[test]
fn a_hostile_config_file_is_refused_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reco.toml");
    for (text, key) in [
        ("[model]\nworkers = 0\n", "model.workers"),
        ("[sessions]\nmax_residents = 5\n", "max_residents"),
        (
            "[recommend]\ndefault_deadline_ms = 999999999\n",
            "recommend.default_deadline_ms",
        ),
        ("not toml at all [", "invalid"),
    ] {
        std::fs::write(&path, text).unwrap();
        let output = reco(&[
            "serve",
            "--print-config",
            "--config",
            path.to_str().unwrap(),
        ]);
        assert!(!output.status.success(), "{text} was accepted");
        assert!(stderr(&output).contains(key), "{text}: {}", stderr(&output));
    }
}

#[test]
fn serving_without_a_reachable_nats_says_how_to_fix_it() {
    let port = reco_e2e::free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("reco.toml");
    std::fs::write(&config, "[nats]\nconnect_timeout_ms = 500\n").unwrap();
    let output = reco(&[
        "serve",
        "--nats",
        &url,
        "--metrics-addr",
        "",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("cannot connect to NATS") && err.contains("nats-server"),
        "{err}"
    );
}

#[test]
fn a_bad_ratings_file_is_reported_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let ratings = dir.path().join("ratings.csv");
    std::fs::write(
        &ratings,
        "userId,movieId,rating,timestamp\n1,10,4.0,964982703\n1,11,lots,964982703\n",
    )
    .unwrap();
    let out = dir.path().join("model");
    let output = reco(&[
        "train",
        "--ratings",
        ratings.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("line 3"), "{err}");
    assert!(
        !out.join("model.bin").exists(),
        "nothing is written from a bad file"
    );
}

#[test]
fn training_writes_a_model_that_loads() {
    let dir = tempfile::tempdir().unwrap();
    let ratings = dir.path().join("ratings.csv");
    let mut csv = String::from("userId,movieId,rating,timestamp\n");
    for member in 0..40u64 {
        for j in 0..8u64 {
            csv.push_str(&format!(
                "{member},{},4.0,964982703\n",
                (member % 5) * 10 + j
            ));
        }
    }
    std::fs::write(&ratings, csv).unwrap();
    let out = dir.path().join("model");
    let output = reco(&[
        "train",
        "--ratings",
        ratings.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--factors",
        "8",
        "--iterations",
        "3",
        "--version",
        "tiny-v1",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let (model, lists) = reco_offline::artifacts::load(&out).unwrap();
    assert_eq!(model.version(), "tiny-v1");
    assert_eq!(model.dim(), 8);
    assert_eq!(lists.members.len(), 40);
    assert!(!lists.popular.is_empty());
}

#[test]
fn health_reload_config_and_event_tell_an_operator_what_they_need() {
    let nats = reco_e2e::NatsServer::start();
    let url = nats.url();
    // No node yet: health says so; an event is published with a warning.
    let out = reco(&["health", "--nats", &url]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no reco node answers"), "{stderr}");
    let out = reco(&["event", "--nats", &url, "--member", "7", "--item", "1"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no reco node answers"), "{stderr}");

    let fixture = reco_e2e::Fixture::write(100, 8, 0, "fixture-verbs");
    let _node = reco_e2e::Node::start(&url, Some(fixture.path()), "");
    let out = reco(&["health", "--nats", &url]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("serving") && stdout.contains("fixture-verbs"),
        "{stdout}"
    );
    let out = reco(&["event", "--nats", &url, "--member", "7", "--item", "1000"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).is_empty(),
        "a warning with a node serving"
    );
    let out = reco(&["reload", "--nats", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("reloaded"));

    let out = reco(&["config", "--nats", "nats://alice:s3cret@127.0.0.1:4222"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        stdout.contains("nats://alice:<redacted>@127.0.0.1:4222") && !stdout.contains("s3cret"),
        "{stdout}"
    );
}
