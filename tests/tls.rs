//! SMPP over TLS: a throwaway certificate (rcgen), a bind and a submit
//! through rustls, and a plain-TCP client on the TLS port getting nowhere.

mod common;

use std::sync::Arc;

use common::{submit_sm, Esme, PASSWORD};
use smsmax_protocol::CommandStatus;
use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use tokio_rustls::{rustls, TlsConnector};

#[tokio::test]
async fn bind_and_submit_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = certified.cert.pem();
    std::fs::write(dir.path().join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), certified.key_pair.serialize_pem()).unwrap();
    let extra = format!(
        "[smpp.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{0}/cert.pem\"\nkey = \"{0}/key.pem\"\n",
        dir.path().display()
    );
    // [smpp.tls] must follow [smpp]: put it in the config text directly.
    let mut config = common::config(dir.path(), "");
    config.smpp.tls = Some(toml::from_str::<TlsOnly>(&extra).unwrap().smpp.tls);
    let running = smsmax::serve::start(config).await.unwrap();
    let tls_addr = running.smpp_tls_addr.expect("TLS listener");

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap())
        .unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    let mut esme = Esme::new(tls);
    assert_eq!(
        esme.bind("transmitter", "alice", PASSWORD).await,
        CommandStatus::ESME_ROK
    );
    let resp = esme.call(submit_sm("447700900002", "over TLS")).await;
    assert_eq!(resp.command_status, CommandStatus::ESME_ROK);

    // Plain SMPP on the TLS port is not a TLS ClientHello: the server drops it.
    let mut plain = common::connect(tls_addr).await;
    plain.send(smsmax_protocol::Body::EnquireLink).await;
    assert!(plain.recv().await.is_none());

    running.stop().await.unwrap();
}

#[derive(serde::Deserialize)]
struct TlsOnly {
    smpp: TlsSection,
}

#[derive(serde::Deserialize)]
struct TlsSection {
    tls: smsmax::config::TlsConfig,
}
