//! Connection security against real nats-servers configured for it (issue
//! 11): `reco serve` and the `reco` client commands authenticate with user
//! and password (config, environment, URL), a token, an NKey, a `.creds`
//! file, and TLS with a client certificate; a wrong password fails with a
//! clear error that does not contain it. Every key and certificate is made
//! by the test.

use reco_client::{NatsSecurity, Secret};
use reco_e2e::{ask, reco_binary, Fixture, NatsServer, Node};
use reco_messages::RecommendReply;
use std::path::Path;
use std::process::{Command, Output};

fn fixture() -> Fixture {
    Fixture::write(300, 8, 10, "v-sec")
}

/// `reco <args>` with the NATS environment cleared, then `env` set.
fn reco(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(reco_binary());
    command.args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("RECO_NATS_") {
            command.env_remove(&name);
        }
    }
    command.envs(env.iter().copied());
    command.output().expect("cannot run reco")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A node on `nats` with `nats_toml` in its `[nats]` section answers a
/// request from `client` (so it connected, subscribed and replies).
async fn served(client: &async_nats::Client) {
    match ask(client, 3, 2_000).await {
        RecommendReply::Ok(reply) => assert!(!reply.items.is_empty(), "{reply:?}"),
        other => panic!("the node did not serve: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_password_from_config_env_and_url_and_a_wrong_one_fails_without_leaking() {
    let nats = NatsServer::start_with_config(
        "authorization {\n  user: alice\n  password: \"s3cret-Pw\"\n}\n",
    );
    let fixture = fixture();
    let node = Node::start(
        &nats.url(),
        Some(fixture.path()),
        "[nats]\nuser = \"alice\"\npassword = \"s3cret-Pw\"\n",
    );
    assert!(!node.log().contains("s3cret-Pw"), "{}", node.log());

    // A client with the options, and one with the credentials in the URL.
    let client = nats
        .client_with(NatsSecurity {
            user: Some("alice".into()),
            password: Some(Secret::new("s3cret-Pw")),
            ..Default::default()
        })
        .await;
    served(&client).await;
    let in_url = nats.url().replace("nats://", "nats://alice:s3cret-Pw@");
    let client = reco_client::ConnectOptions::new(&in_url)
        .connect()
        .await
        .expect("credentials in the URL are used");
    served(&client).await;

    // The command line, from the environment.
    let url = nats.url();
    let args = ["recommend", "--nats", url.as_str(), "--member", "3"];
    let ok = reco(
        &args,
        &[
            ("RECO_NATS_USER", "alice"),
            ("RECO_NATS_PASSWORD", "s3cret-Pw"),
        ],
    );
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("\"items\""), "{}", text(&ok));

    // A wrong password: a clear error that names the cause, not the secret.
    let wrong = reco(
        &args,
        &[
            ("RECO_NATS_USER", "alice"),
            ("RECO_NATS_PASSWORD", "hunter2-wrong"),
        ],
    );
    assert!(!wrong.status.success(), "{}", text(&wrong));
    let said = text(&wrong);
    assert!(said.contains("refused the credentials"), "{said}");
    assert!(said.contains("user/password"), "{said}");
    assert!(!said.contains("hunter2-wrong"), "{said}");
    // The same in the URL: the URL is printed redacted.
    let wrong_url = nats.url().replace("nats://", "nats://alice:hunter2-wrong@");
    let wrong = reco(&["recommend", "--nats", &wrong_url, "--member", "3"], &[]);
    let said = text(&wrong);
    assert!(!wrong.status.success(), "{said}");
    assert!(said.contains("alice:<redacted>@"), "{said}");
    assert!(!said.contains("hunter2-wrong"), "{said}");

    // `reco serve` with a wrong password exits with the same clear error.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("reco.toml");
    std::fs::write(
        &config,
        "[nats]\nuser = \"alice\"\npassword = \"hunter2-wrong\"\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let serve = reco(
        &[
            "serve",
            "--config",
            config,
            "--nats",
            &url,
            "--metrics-addr",
            "",
        ],
        &[],
    );
    let said = text(&serve);
    assert!(!serve.status.success(), "{said}");
    assert!(said.contains("refused the credentials"), "{said}");
    assert!(!said.contains("hunter2-wrong"), "{said}");

    // --print-config shows that a password is set, never what it is.
    let printed = reco(
        &["serve", "--config", config, "--print-config"],
        &[("RECO_NATS_URL", "nats://bob:url-secret@h:4222")],
    );
    let said = text(&printed);
    assert!(printed.status.success(), "{said}");
    assert!(said.contains("password = \"<redacted>\""), "{said}");
    assert!(said.contains("nats://bob:<redacted>@h:4222"), "{said}");
    assert!(
        !said.contains("hunter2-wrong") && !said.contains("url-secret"),
        "{said}"
    );
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_config_env_or_url_authenticates() {
    let nats = NatsServer::start_with_config("authorization {\n  token: \"t0ken-XYZ\"\n}\n");
    let fixture = fixture();
    let node = Node::start(
        &nats.url(),
        Some(fixture.path()),
        "[nats]\ntoken = \"t0ken-XYZ\"\n",
    );
    assert!(!node.log().contains("t0ken-XYZ"), "{}", node.log());
    let in_url = nats.url().replace("nats://", "nats://t0ken-XYZ@");
    let client = reco_client::ConnectOptions::new(&in_url)
        .connect()
        .await
        .expect("a token in the URL is used");
    served(&client).await;
    let url = nats.url();
    let ok = reco(
        &["recommend", "--nats", &url, "--member", "3"],
        &[("RECO_NATS_TOKEN", "t0ken-XYZ")],
    );
    assert!(ok.status.success(), "{}", text(&ok));
    let none = reco(&["recommend", "--nats", &url, "--member", "3"], &[]);
    let said = text(&none);
    assert!(!none.status.success(), "{said}");
    assert!(said.contains("no credentials were given"), "{said}");
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_nkey_seed_file_authenticates() {
    let user = nkeys::KeyPair::new_user();
    let nats = NatsServer::start_with_config(&format!(
        "authorization {{\n  users: [ {{ nkey: {} }} ]\n}}\n",
        user.public_key()
    ));
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("user.nk");
    std::fs::write(&seed, user.seed().unwrap()).unwrap();
    let fixture = fixture();
    let node = Node::start(
        &nats.url(),
        Some(fixture.path()),
        &format!(
            "[nats]\nnkey_seed_file = {:?}\n",
            seed.display().to_string()
        ),
    );
    let client = nats
        .client_with(NatsSecurity {
            nkey_seed_file: Some(seed.clone()),
            ..Default::default()
        })
        .await;
    served(&client).await;
    let url = nats.url();
    let seed_path = seed.to_str().unwrap();
    let ok = reco(
        &["recommend", "--nats", &url, "--member", "3"],
        &[("RECO_NATS_NKEY_SEED_FILE", seed_path)],
    );
    assert!(ok.status.success(), "{}", text(&ok));
    // Another key is refused.
    let other = dir.path().join("other.nk");
    std::fs::write(&other, nkeys::KeyPair::new_user().seed().unwrap()).unwrap();
    let refused = reco(
        &[
            "recommend",
            "--nats",
            &url,
            "--member",
            "3",
            "--nats-nkey-seed-file",
            other.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("refused the credentials"),
        "{}",
        text(&refused)
    );
    drop(node);
}

/// Runs `openssl` with `args` in `dir`, failing with a clear message when
/// it is missing.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "the TLS test needs the openssl command line tool (apt-get install openssl): {e}"
            )
        });
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all
/// signed by the CA, as PEM files in `dir`.
fn make_certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=reco test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
        ],
    );
    for (name, cn, ext) in [
        (
            "server",
            "127.0.0.1",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
        ),
        (
            "client",
            "reco-client",
            "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
        ),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                &format!("{name}-key.pem"),
                "-out",
                &format!("{name}.csr"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.pem"),
            ],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_client_certificate_verified_by_the_server() {
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    make_certificates(dir);
    let path = |name: &str| dir.join(name).display().to_string();
    let nats = NatsServer::start_with_config(&format!(
        "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  ca_file: {:?}\n  verify: true\n  timeout: 5\n}}\n",
        path("server.pem"),
        path("server-key.pem"),
        path("ca.pem"),
    ));
    let fixture = fixture();
    let node = Node::start(
        &nats.url(),
        Some(fixture.path()),
        &format!(
            "[nats]\ntls_required = true\ntls_ca_file = {:?}\ntls_cert_file = {:?}\ntls_key_file = {:?}\n",
            path("ca.pem"),
            path("client.pem"),
            path("client-key.pem"),
        ),
    );
    let client = nats
        .client_with(NatsSecurity {
            tls_required: true,
            tls_ca_file: Some(dir.join("ca.pem")),
            tls_cert_file: Some(dir.join("client.pem")),
            tls_key_file: Some(dir.join("client-key.pem")),
            ..Default::default()
        })
        .await;
    served(&client).await;
    let url = nats.url();
    let (ca, cert, key) = (path("ca.pem"), path("client.pem"), path("client-key.pem"));
    let ok = reco(
        &["recommend", "--nats", &url, "--member", "3"],
        &[
            ("RECO_NATS_TLS_CA_FILE", ca.as_str()),
            ("RECO_NATS_TLS_CERT_FILE", cert.as_str()),
            ("RECO_NATS_TLS_KEY_FILE", key.as_str()),
            ("RECO_NATS_TLS_REQUIRED", "true"),
        ],
    );
    assert!(ok.status.success(), "{}", text(&ok));
    // Without a client certificate the server refuses the handshake.
    let refused = reco(
        &["recommend", "--nats", &url, "--member", "3"],
        &[("RECO_NATS_TLS_CA_FILE", ca.as_str())],
    );
    assert!(!refused.status.success(), "{}", text(&refused));
    drop(node);
}

/// A signed NATS JWT (`ed25519-nkey`) with `claims`, issued by `issuer`.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let iat = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "jti": format!("JTI{subject}"),
        "iat": iat,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let payload = b64.encode(claims.to_string());
    let signed = format!("{header}.{payload}");
    let signature = b64.encode(issuer.sign(signed.as_bytes()).unwrap());
    format!("{signed}.{signature}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creds_file_of_an_operator_account_user_chain_authenticates() {
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let system = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let operator_jwt = jwt(
        &operator,
        &operator.public_key(),
        "reco-test-operator",
        serde_json::json!({"type": "operator", "version": 2,
                           "system_account": system.public_key()}),
    );
    // JetStream needs a system account.
    let system_jwt = jwt(
        &operator,
        &system.public_key(),
        "SYS",
        serde_json::json!({"type": "account", "version": 2}),
    );
    let unlimited = serde_json::json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "conn": -1, "leaf": -1,
        "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1
    });
    let account_jwt = jwt(
        &operator,
        &account.public_key(),
        "reco",
        serde_json::json!({"type": "account", "version": 2, "limits": unlimited}),
    );
    let user_jwt = jwt(
        &account,
        &user.public_key(),
        "reco-node",
        serde_json::json!({"type": "user", "version": 2, "pub": {}, "sub": {},
                           "subs": -1, "data": -1, "payload": -1}),
    );
    let nats = NatsServer::start_with_config(&format!(
        "operator: {operator_jwt}\nsystem_account: {sys}\nresolver: MEMORY\n\
         resolver_preload: {{\n  {}: {account_jwt}\n  {sys}: {system_jwt}\n}}\n",
        account.public_key(),
        sys = system.public_key(),
    ));
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("reco.creds");
    std::fs::write(
        &creds,
        format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            user.seed().unwrap()
        ),
    )
    .unwrap();
    let fixture = fixture();
    let node = Node::start(
        &nats.url(),
        Some(fixture.path()),
        &format!("[nats]\ncreds_file = {:?}\n", creds.display().to_string()),
    );
    let client = nats
        .client_with(NatsSecurity {
            creds_file: Some(creds.clone()),
            ..Default::default()
        })
        .await;
    served(&client).await;
    let url = nats.url();
    let ok = reco(
        &["recommend", "--nats", &url, "--member", "3"],
        &[("RECO_NATS_CREDS_FILE", creds.to_str().unwrap())],
    );
    assert!(ok.status.success(), "{}", text(&ok));
    let none = reco(&["recommend", "--nats", &url, "--member", "3"], &[]);
    assert!(!none.status.success(), "{}", text(&none));
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changing_admin_requests_need_the_operator_token_and_refusals_are_counted() {
    use reco_messages::admin::{ModelCommand, SetFaults};
    use reco_messages::metrics as m;
    let nats = NatsServer::start();
    let fixture = fixture();
    let node = Node::start(
        &nats.url(),
        Some(fixture.path()),
        "[admin]\noperator_token = \"op-S3cret\"\n[node]\nfault_injection = true\n",
    );
    let client = nats.client().await;
    let anyone = NatsServer::admin(&client);
    let faults = anyone.faults(&SetFaults::default()).await.unwrap_err();
    assert!(faults.to_string().contains("operator token"), "{faults}");
    let reload = anyone.reload().await.unwrap();
    assert!(
        reload
            .error
            .as_deref()
            .is_some_and(|e| e.contains("operator token")),
        "{reload:?}"
    );
    let unpin = ModelCommand {
        pin: None,
        unpin: true,
    };
    let model = anyone.model(&unpin).await.unwrap();
    assert!(
        model
            .error
            .as_deref()
            .is_some_and(|e| e.contains("operator token")),
        "{model:?}"
    );
    // Reading is open: a status request needs no token.
    let status = anyone.model(&ModelCommand::default()).await.unwrap();
    assert_eq!(status.error, None, "{status:?}");
    for subject in ["faults", "reload", "model"] {
        let label = format!("subject=\"{subject}\"");
        assert_eq!(
            node.metric(m::ADMIN_REFUSED_TOTAL, &[&label]),
            1.0,
            "{subject}"
        );
    }

    // A wrong token is refused too; the right one is obeyed.
    let wrong = NatsServer::admin(&client).with_operator_token(Some(Secret::new("op-wrong")));
    assert!(wrong.faults(&SetFaults::default()).await.is_err());
    let operator = NatsServer::admin(&client).with_operator_token(Some(Secret::new("op-S3cret")));
    operator.faults(&SetFaults::default()).await.unwrap();
    assert_eq!(operator.reload().await.unwrap().error, None);
    assert_eq!(operator.model(&unpin).await.unwrap().error, None);
    assert_eq!(node.metric(m::ADMIN_REFUSED_TOTAL, &[]), 4.0);
    assert!(!node.log().contains("op-S3cret") && !node.log().contains("op-wrong"));

    // `reco model` sends the token from the environment.
    let url = nats.url();
    let refused = reco(&["model", "--nats", &url, "--unpin"], &[]);
    assert!(!refused.status.success(), "{}", text(&refused));
    let ok = reco(
        &["model", "--nats", &url, "--unpin"],
        &[("RECO_OPERATOR_TOKEN", "op-S3cret")],
    );
    assert!(ok.status.success(), "{}", text(&ok));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_with_retry_on_initial_connect_fails_at_once_without_the_secret() {
    let nats = NatsServer::start_with_config(
        "authorization {\n  user: alice\n  password: \"s3cret-Pw\"\n}\n",
    );
    let wrong = NatsSecurity {
        user: Some("alice".into()),
        password: Some(Secret::new("hunter2-wrong")),
        ..Default::default()
    };
    // What the simulator connects with: retrying a server that is still
    // starting, yet a refused password must not be retried forever.
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let url = nats.url();
    let attempt = reco_sim::driver::connect_with(&url, counter, wrong);
    let result = tokio::time::timeout(std::time::Duration::from_secs(10), attempt)
        .await
        .expect("a refused password is not retried forever");
    let said = format!(
        "{:#}",
        result.expect_err("a wrong password does not connect")
    );
    assert!(said.contains("refused the credentials"), "{said}");
    assert!(!said.contains("hunter2-wrong"), "{said}");
    // The right one still connects through the same path.
    let right = NatsSecurity {
        user: Some("alice".into()),
        password: Some(Secret::new("s3cret-Pw")),
        ..Default::default()
    };
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    reco_sim::driver::connect_with(&url, counter, right)
        .await
        .expect("the right password connects");
}
