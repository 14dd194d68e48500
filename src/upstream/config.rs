//! The configuration of one upstream SMSC, ready to be embedded in the main
//! configuration as `[[upstreams]]`:
//!
//! ```toml
//! [[upstreams]]
//! name = "carrier-a"
//! host = "smsc.carrier-a.example"
//! port = 2775
//! system_id = "smsmax"
//! password = "secret"
//! bind_mode = "transceiver"      # or "transmitter_receiver"
//! binds = 4                      # sessions (pairs with transmitter_receiver)
//! window = 64                    # requests outstanding per bind
//! throughput = 500               # submit_sm per second for the whole upstream; 0: no cap
//! submit_id_style = "hex_to_decimal"   # how submit_sm_resp message_ids are normalised
//! receipt_id_style = "decimal"         # how receipt ids are normalised (same canonical form)
//! long_messages = "udh"                # "payload" (default), "udh" or "sar": how long messages are sent
//! ```
//!
//! Every field but `name`, `host`, `port`, `system_id` and `password` has a
//! default. Times are in milliseconds so that tests can use short ones.

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use smsmax_protocol::receipt::IdStyle;

use crate::{
    client::{BindRequest, BindType, ClientSettings},
    relay::parts::LongMessages,
};

/// How one side of an upstream's message ids is normalised into the key
/// receipts are matched by: the configuration names of
/// [`smsmax_protocol::receipt::IdStyle`].
///
/// The submit_sm_resp `message_id` is normalised with the upstream's
/// `submit_id_style`, the receipt's id with its `receipt_id_style`; both must
/// produce the same canonical form ([`IdStyleName::canonical_form`]), e.g. a
/// carrier answering in hex and receipting in decimal needs
/// `submit_id_style = "hex_to_decimal"` and `receipt_id_style = "decimal"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdStyleName {
    /// Exactly as sent (surrounding whitespace ignored).
    AsIs,
    /// Any case (lowercased): right for most carriers, which send the same
    /// string in both places.
    #[default]
    CaseInsensitive,
    /// Hexadecimal, written lowercase without leading zeros.
    Hex,
    /// Decimal, without leading zeros.
    Decimal,
    /// Hexadecimal, written as its decimal value.
    HexToDecimal,
    /// Decimal, written as its lowercase hexadecimal value.
    DecimalToHex,
}

/// What a normalised id looks like; two styles can be paired only when they
/// produce the same form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CanonicalForm {
    /// The string as sent.
    Exact,
    /// The string lowercased.
    Lowercase,
    /// A number in lowercase hexadecimal without leading zeros.
    HexNumber,
    /// A number in decimal without leading zeros.
    DecimalNumber,
}

impl IdStyleName {
    pub fn style(self) -> IdStyle {
        match self {
            IdStyleName::AsIs => IdStyle::AsIs,
            IdStyleName::CaseInsensitive => IdStyle::CaseInsensitive,
            IdStyleName::Hex => IdStyle::Hex,
            IdStyleName::Decimal => IdStyle::Decimal,
            IdStyleName::HexToDecimal => IdStyle::HexToDecimal,
            IdStyleName::DecimalToHex => IdStyle::DecimalToHex,
        }
    }

    /// The form of the ids this style produces.
    pub fn canonical_form(self) -> CanonicalForm {
        match self {
            IdStyleName::AsIs => CanonicalForm::Exact,
            IdStyleName::CaseInsensitive => CanonicalForm::Lowercase,
            IdStyleName::Hex | IdStyleName::DecimalToHex => CanonicalForm::HexNumber,
            IdStyleName::Decimal | IdStyleName::HexToDecimal => CanonicalForm::DecimalNumber,
        }
    }

    /// The configuration spelling.
    pub fn name(self) -> &'static str {
        match self {
            IdStyleName::AsIs => "as_is",
            IdStyleName::CaseInsensitive => "case_insensitive",
            IdStyleName::Hex => "hex",
            IdStyleName::Decimal => "decimal",
            IdStyleName::HexToDecimal => "hex_to_decimal",
            IdStyleName::DecimalToHex => "decimal_to_hex",
        }
    }

    /// The matching key for `id`, `None` when it is not an id of this style
    /// (empty, or not a number in the expected base).
    pub fn normalise(self, id: &str) -> Option<String> {
        smsmax_protocol::receipt::normalise_message_id(id, self.style())
    }
}

/// How the sessions towards one upstream are bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindMode {
    /// `binds` transceiver sessions: each submits and receives receipts.
    #[default]
    Transceiver,
    /// `binds` transmitter sessions plus `binds` receiver sessions.
    TransmitterReceiver,
}

/// One upstream SMSC and the pool of binds towards it.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Unique name, used in routes, logs and on inbound messages.
    pub name: String,
    pub host: String,
    pub port: u16,
    /// Connect over TLS (rustls). The server certificate is verified against
    /// the PEM certificates in `tls_ca_file`, which is then required.
    #[serde(default)]
    pub tls: bool,
    /// PEM file of the CA certificates trusted for this upstream.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Name checked against the server certificate; `host` when absent.
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// At most 15 characters.
    pub system_id: String,
    /// At most 8 characters. The carrier needs it in clear, so it is kept in
    /// clear (unlike client passwords); it is never logged.
    pub password: String,
    /// At most 12 characters; empty by default.
    #[serde(default)]
    pub system_type: String,
    /// `0x34` (SMPP 3.4) by default.
    #[serde(default = "default_interface_version")]
    pub interface_version: u8,
    #[serde(default)]
    pub bind_mode: BindMode,
    /// Sessions kept bound (transceivers, or transmitter + receiver pairs).
    #[serde(default = "default_binds")]
    pub binds: usize,
    /// Requests outstanding per bind.
    #[serde(default = "default_window")]
    pub window: usize,
    /// submit_sm per second across all binds of this upstream (GCRA); 0: no cap.
    #[serde(default)]
    pub throughput: u32,
    /// Idle time after which an enquire_link is sent; 0 disables it.
    #[serde(default = "default_enquire_link_interval_ms")]
    pub enquire_link_interval_ms: u64,
    /// Longest wait for a connect, a bind_resp, a window slot or a response.
    #[serde(default = "default_response_timeout_ms")]
    pub response_timeout_ms: u64,
    /// First reconnect delay; doubles per failed attempt up to `reconnect_max_ms`.
    #[serde(default = "default_reconnect_min_ms")]
    pub reconnect_min_ms: u64,
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// Share of each reconnect delay taken off at random (0.0..=1.0), so that
    /// binds do not reconnect in lockstep; the delay never exceeds the maximum.
    #[serde(default = "default_reconnect_jitter")]
    pub reconnect_jitter: f64,
    /// How long a bind stops taking submits after ESME_RTHROTTLED or
    /// ESME_RMSGQFUL; doubles while the upstream keeps throttling, up to
    /// `throttle_backoff_max_ms`, and resets on the next accepted submit.
    #[serde(default = "default_throttle_backoff_min_ms")]
    pub throttle_backoff_min_ms: u64,
    #[serde(default = "default_throttle_backoff_max_ms")]
    pub throttle_backoff_max_ms: u64,
    /// Capacity of the channel merging deliver_sm / data_sm of every bind.
    #[serde(default = "default_inbound_queue")]
    pub inbound_queue: usize,
    /// How the submit_sm_resp `message_id` is normalised into the key a
    /// receipt is matched by.
    #[serde(default)]
    pub submit_id_style: IdStyleName,
    /// How the id in this upstream's receipts (`receipted_message_id` or
    /// `id:`) is normalised; must give the same form as `submit_id_style`.
    #[serde(default)]
    pub receipt_id_style: IdStyleName,
    /// How messages longer than one SMS are sent to this upstream: whole in
    /// `message_payload` (the default), or cut into concatenated parts with
    /// a UDH or with SAR TLVs (see [`crate::relay::parts`]).
    #[serde(default)]
    pub long_messages: LongMessages,
}

fn default_interface_version() -> u8 {
    0x34
}
fn default_binds() -> usize {
    1
}
fn default_window() -> usize {
    64
}
fn default_enquire_link_interval_ms() -> u64 {
    30_000
}
fn default_response_timeout_ms() -> u64 {
    10_000
}
fn default_reconnect_min_ms() -> u64 {
    500
}
fn default_reconnect_max_ms() -> u64 {
    30_000
}
fn default_reconnect_jitter() -> f64 {
    0.25
}
fn default_throttle_backoff_min_ms() -> u64 {
    1_000
}
fn default_throttle_backoff_max_ms() -> u64 {
    30_000
}
fn default_inbound_queue() -> usize {
    1024
}

impl std::fmt::Debug for UpstreamConfig {
    /// Everything but the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_server_name", &self.tls_server_name)
            .field("system_id", &self.system_id)
            .field("password", &"<redacted>")
            .field("system_type", &self.system_type)
            .field("interface_version", &self.interface_version)
            .field("bind_mode", &self.bind_mode)
            .field("binds", &self.binds)
            .field("window", &self.window)
            .field("throughput", &self.throughput)
            .field("enquire_link_interval_ms", &self.enquire_link_interval_ms)
            .field("response_timeout_ms", &self.response_timeout_ms)
            .field("reconnect_min_ms", &self.reconnect_min_ms)
            .field("reconnect_max_ms", &self.reconnect_max_ms)
            .field("reconnect_jitter", &self.reconnect_jitter)
            .field("throttle_backoff_min_ms", &self.throttle_backoff_min_ms)
            .field("throttle_backoff_max_ms", &self.throttle_backoff_max_ms)
            .field("inbound_queue", &self.inbound_queue)
            .field("submit_id_style", &self.submit_id_style)
            .field("receipt_id_style", &self.receipt_id_style)
            .field("long_messages", &self.long_messages)
            .finish()
    }
}

impl UpstreamConfig {
    /// An upstream with every optional field at its default.
    pub fn new(
        name: impl Into<String>,
        host: impl Into<String>,
        port: u16,
        system_id: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        UpstreamConfig {
            name: name.into(),
            host: host.into(),
            port,
            tls: false,
            tls_ca_file: None,
            tls_server_name: None,
            system_id: system_id.into(),
            password: password.into(),
            system_type: String::new(),
            interface_version: default_interface_version(),
            bind_mode: BindMode::default(),
            binds: default_binds(),
            window: default_window(),
            throughput: 0,
            enquire_link_interval_ms: default_enquire_link_interval_ms(),
            response_timeout_ms: default_response_timeout_ms(),
            reconnect_min_ms: default_reconnect_min_ms(),
            reconnect_max_ms: default_reconnect_max_ms(),
            reconnect_jitter: default_reconnect_jitter(),
            throttle_backoff_min_ms: default_throttle_backoff_min_ms(),
            throttle_backoff_max_ms: default_throttle_backoff_max_ms(),
            inbound_queue: default_inbound_queue(),
            submit_id_style: IdStyleName::default(),
            receipt_id_style: IdStyleName::default(),
            long_messages: LongMessages::default(),
        }
    }

    /// Refuses values that cannot work; messages name the upstream and the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        let name = &self.name;
        anyhow::ensure!(!name.is_empty(), "an upstream has an empty name");
        anyhow::ensure!(!self.host.is_empty(), "upstream {name}: host is empty");
        anyhow::ensure!(self.port != 0, "upstream {name}: port must not be 0");
        anyhow::ensure!(
            !self.system_id.is_empty() && self.system_id.len() <= 15,
            "upstream {name}: system_id must have 1 to 15 characters"
        );
        anyhow::ensure!(
            self.password.len() <= 8,
            "upstream {name}: password longer than SMPP's 8 characters"
        );
        anyhow::ensure!(
            self.system_type.len() <= 12,
            "upstream {name}: system_type longer than SMPP's 12 characters"
        );
        anyhow::ensure!(self.binds >= 1, "upstream {name}: binds must be at least 1");
        anyhow::ensure!(self.window >= 1, "upstream {name}: window must be at least 1");
        anyhow::ensure!(
            self.response_timeout_ms >= 1,
            "upstream {name}: response_timeout_ms must be at least 1"
        );
        anyhow::ensure!(
            self.reconnect_min_ms >= 1,
            "upstream {name}: reconnect_min_ms must be at least 1"
        );
        anyhow::ensure!(
            self.reconnect_max_ms >= self.reconnect_min_ms,
            "upstream {name}: reconnect_max_ms is below reconnect_min_ms"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.reconnect_jitter),
            "upstream {name}: reconnect_jitter must be between 0 and 1"
        );
        anyhow::ensure!(
            self.throttle_backoff_min_ms >= 1,
            "upstream {name}: throttle_backoff_min_ms must be at least 1"
        );
        anyhow::ensure!(
            self.throttle_backoff_max_ms >= self.throttle_backoff_min_ms,
            "upstream {name}: throttle_backoff_max_ms is below throttle_backoff_min_ms"
        );
        anyhow::ensure!(
            self.inbound_queue >= 1,
            "upstream {name}: inbound_queue must be at least 1"
        );
        anyhow::ensure!(
            !self.tls || self.tls_ca_file.is_some(),
            "upstream {name}: tls needs tls_ca_file (the PEM CA certificates to trust)"
        );
        anyhow::ensure!(
            self.submit_id_style.canonical_form() == self.receipt_id_style.canonical_form(),
            "upstream {name}: submit_id_style {:?} and receipt_id_style {:?} normalise ids differently \
             ({:?} vs {:?}), so no receipt could ever match; e.g. hex answers and decimal receipts need \
             submit_id_style = \"hex_to_decimal\" and receipt_id_style = \"decimal\"",
            self.submit_id_style.name(),
            self.receipt_id_style.name(),
            self.submit_id_style.canonical_form(),
            self.receipt_id_style.canonical_form(),
        );
        Ok(())
    }

    pub fn response_timeout(&self) -> Duration {
        Duration::from_millis(self.response_timeout_ms)
    }

    pub fn reconnect_min(&self) -> Duration {
        Duration::from_millis(self.reconnect_min_ms)
    }

    pub fn reconnect_max(&self) -> Duration {
        Duration::from_millis(self.reconnect_max_ms)
    }

    pub fn throttle_backoff_min(&self) -> Duration {
        Duration::from_millis(self.throttle_backoff_min_ms)
    }

    pub fn throttle_backoff_max(&self) -> Duration {
        Duration::from_millis(self.throttle_backoff_max_ms)
    }

    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The bind PDU fields of one session of `bind_type`.
    pub fn bind_request(&self, bind_type: BindType) -> BindRequest {
        let mut bind = BindRequest::new(bind_type, self.system_id.clone(), self.password.clone());
        bind.system_type = self.system_type.clone();
        bind.interface_version = self.interface_version;
        bind
    }

    /// The session limits of every bind.
    pub fn client_settings(&self) -> ClientSettings {
        ClientSettings {
            window: self.window,
            response_timeout: self.response_timeout(),
            enquire_link_interval: Duration::from_millis(self.enquire_link_interval_ms),
            ..ClientSettings::default()
        }
    }

    /// The bind types of the sessions, in order: `binds` transceivers, or
    /// `binds` transmitters followed by `binds` receivers.
    pub fn sessions(&self) -> Vec<BindType> {
        match self.bind_mode {
            BindMode::Transceiver => vec![BindType::Transceiver; self.binds],
            BindMode::TransmitterReceiver => {
                let mut v = vec![BindType::Transmitter; self.binds];
                v.extend(std::iter::repeat_n(BindType::Receiver, self.binds));
                v
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_toml_gets_defaults() {
        let c: UpstreamConfig = toml::from_str(
            r#"
            name = "a"
            host = "127.0.0.1"
            port = 2775
            system_id = "smsmax"
            password = "pw"
            "#,
        )
        .unwrap();
        assert_eq!(c, UpstreamConfig::new("a", "127.0.0.1", 2775, "smsmax", "pw"));
        assert_eq!(c.interface_version, 0x34);
        assert_eq!(c.bind_mode, BindMode::Transceiver);
        assert_eq!(c.sessions(), vec![BindType::Transceiver]);
        c.validate().unwrap();
    }

    #[test]
    fn full_toml_and_unknown_fields() {
        let c: UpstreamConfig = toml::from_str(
            r#"
            name = "b"
            host = "smsc"
            port = 2775
            tls = true
            tls_ca_file = "/etc/ca.pem"
            system_id = "x"
            password = "y"
            system_type = "VMA"
            interface_version = 0x33
            bind_mode = "transmitter_receiver"
            binds = 2
            window = 10
            throughput = 100
            enquire_link_interval_ms = 5000
            response_timeout_ms = 2000
            reconnect_min_ms = 100
            reconnect_max_ms = 1000
            reconnect_jitter = 0.5
            throttle_backoff_min_ms = 200
            throttle_backoff_max_ms = 400
            inbound_queue = 16
            submit_id_style = "hex_to_decimal"
            receipt_id_style = "decimal"
            long_messages = "sar"
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.long_messages, LongMessages::Sar);
        assert_eq!(
            c.sessions(),
            vec![
                BindType::Transmitter,
                BindType::Transmitter,
                BindType::Receiver,
                BindType::Receiver
            ]
        );
        assert!(!format!("{c:?}").contains("\"y\""));
        assert_eq!(c.submit_id_style.normalise("1A"), Some("26".into()));
        assert_eq!(c.receipt_id_style.normalise("0026"), Some("26".into()));
        let bad = toml::from_str::<UpstreamConfig>("name='a'\nhost='h'\nport=1\nsystem_id='s'\npassword='p'\nbogus=1");
        assert!(bad.is_err());
        let base = "name='a'\nhost='h'\nport=1\nsystem_id='s'\npassword='p'\n";
        let c = toml::from_str::<UpstreamConfig>(base).unwrap();
        assert_eq!(c.long_messages, LongMessages::Payload, "today's behaviour by default");
        let e = toml::from_str::<UpstreamConfig>(&format!("{base}long_messages='split'"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("long_messages") || e.contains("udh"), "{e}");
    }

    #[test]
    fn validation_refuses_nonsense() {
        let ok = UpstreamConfig::new("a", "h", 1, "s", "p");
        let mut c = ok.clone();
        c.binds = 0;
        assert!(c.validate().is_err());
        let mut c = ok.clone();
        c.reconnect_max_ms = 1;
        assert!(c.validate().is_err());
        let mut c = ok.clone();
        c.tls = true;
        assert!(c.validate().is_err());
        let mut c = ok.clone();
        c.password = "123456789".into();
        assert!(c.validate().is_err());
        let mut c = ok.clone();
        c.reconnect_jitter = 1.5;
        assert!(c.validate().is_err());
        let mut c = ok;
        c.submit_id_style = IdStyleName::Hex;
        c.receipt_id_style = IdStyleName::Decimal;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("submit_id_style") && e.contains("hex_to_decimal"), "{e}");
    }

    #[test]
    fn id_styles_pair_by_canonical_form() {
        use IdStyleName::*;
        let all = [AsIs, CaseInsensitive, Hex, Decimal, HexToDecimal, DecimalToHex];
        for submit in all {
            for receipt in all {
                let mut c = UpstreamConfig::new("a", "h", 1, "s", "p");
                c.submit_id_style = submit;
                c.receipt_id_style = receipt;
                let paired = submit.canonical_form() == receipt.canonical_form();
                assert_eq!(c.validate().is_ok(), paired, "{submit:?} / {receipt:?}");
            }
        }
        // The pairs that validate agree on the key of one id written both ways.
        assert_eq!(HexToDecimal.normalise("0x00FF"), Decimal.normalise("0255"));
        assert_eq!(DecimalToHex.normalise("255"), Hex.normalise("00FF"));
        assert_eq!(CaseInsensitive.normalise("AbC"), CaseInsensitive.normalise("abc"));
        assert_eq!(Hex.normalise("xyz"), None);
        let names: Vec<IdStyleName> = toml::from_str::<std::collections::HashMap<String, Vec<IdStyleName>>>(
            "v = [\"as_is\", \"case_insensitive\", \"hex\", \"decimal\", \"hex_to_decimal\", \"decimal_to_hex\"]",
        )
        .unwrap()
        .remove("v")
        .unwrap();
        assert_eq!(names, all);
        assert_eq!(
            UpstreamConfig::new("a", "h", 1, "s", "p").submit_id_style,
            CaseInsensitive
        );
    }
}
