//! The demo without `nats-server` on the PATH fails with the install hint.

use std::process::Command;

#[test]
fn demo_without_nats_server_says_how_to_install_it() {
    let empty = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_reco-sim"))
        .args(["demo", "--duration", "1"])
        .env("PATH", empty.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nats-server is not installed"), "{stderr}");
    assert!(
        stderr.contains("apt-get install -y nats-server"),
        "{stderr}"
    );
}
