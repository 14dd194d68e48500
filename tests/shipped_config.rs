//! The shipped `config/smsmax.toml` works as documented: its demo client
//! binds with the password README.md gives.

mod common;

use smsmax::config::Config;
use smsmax_protocol::CommandStatus;

#[tokio::test]
async fn the_demo_client_binds_with_its_documented_password() {
    let dir = tempfile::tempdir().unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/smsmax.toml");
    let mut config = Config::load_with_env(&path, [("SMSMAX_SMPP__LISTEN", "\"127.0.0.1:0\"")]).unwrap();
    config.validate().unwrap();
    config.storage.data_dir = dir.path().join("data");
    let running = smsmax::serve::start(config).await.unwrap();
    let mut esme = common::connect(running.smpp_addr).await;
    assert_eq!(
        esme.bind("transceiver", "demo", "demopass").await,
        CommandStatus::ESME_ROK
    );
    let resp = esme
        .call(common::submit_sm("447700900002", "hello from the demo"))
        .await;
    assert_eq!(resp.command_status, CommandStatus::ESME_ROK);
    drop(esme);
    running.stop().await.unwrap();
}
