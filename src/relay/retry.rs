//! The retry policy: when to try a failed submit again, and when to stop.
//!
//! # Configuration
//!
//! ```toml
//! [retry]
//! max_attempts = 10                 # submits in all, the first one included
//! initial_backoff_ms = 1000         # delay before the 2nd attempt (before jitter)
//! max_backoff_ms = 300000           # no delay is ever longer than this
//! multiplier = 2.0                  # each delay is this many times the previous one
//! jitter = "equal"                  # "equal", "full" or "none"
//! congestion_min_backoff_ms = 5000  # extra delay after ESME_RTHROTTLED / ESME_RMSGQFUL
//! ```
//!
//! # Delays
//!
//! After the `n`th failed attempt (`n` starts at 1) the base delay is
//! `min(max_backoff, initial_backoff * multiplier^(n-1))`, computed without overflow for any `n`.
//! Jitter spreads the retries of many messages that failed together:
//!
//! - **equal** (the default): a uniform delay in `[base/2, base]`. Half the backoff is kept, so a
//!   retry never comes back almost at once, and the other half is spread.
//! - **full**: a uniform delay in `[0, base]` (AWS's "full jitter": the least contention, but a
//!   retry may come back at once).
//! - **none**: exactly `base` (for tests and for carriers that want a fixed cadence).
//!
//! After a congestion status (`ESME_RTHROTTLED` 0x58, `ESME_RMSGQFUL` 0x14: the upstream is
//! alive but asks us to slow down) the delay is `congestion_min_backoff + jittered delay`, still at
//! most `max_backoff`.
//!
//! # Giving up
//!
//! - When the message's validity period has ended (`now >= expires_at`), or the retry would be
//!   due at or after it, the answer is [`RetryDecision::GiveUpExpired`] (the message becomes
//!   EXPIRED): a retry is never scheduled past the validity period. Expiry is checked first, so a
//!   message that is both out of attempts and expired is reported expired.
//! - When `max_attempts` attempts have been made, [`RetryDecision::GiveUpAttempts`] (the message
//!   becomes UNDELIVERABLE).
//! - A permanent status (see [`is_permanent`]) is not retried at all:
//!   [`RetryPolicy::next_for_status`] answers [`RetryDecision::GiveUpPermanent`].

use rand::Rng;
use serde::{Deserialize, Serialize};
use smsmax_protocol::CommandStatus;

/// How a delay is randomised (see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Jitter {
    /// Uniform in `[base/2, base]`.
    #[default]
    Equal,
    /// Uniform in `[0, base]`.
    Full,
    /// Exactly `base`.
    None,
}

/// The `[retry]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Submit attempts in all, the first one included (at least 1; 1 means never retry).
    pub max_attempts: u32,
    /// Delay before the second attempt, before jitter, in milliseconds.
    pub initial_backoff_ms: u64,
    /// Longest delay, in milliseconds.
    pub max_backoff_ms: u64,
    /// Growth factor of the delay per attempt (at least 1.0).
    pub multiplier: f64,
    /// How delays are randomised.
    pub jitter: Jitter,
    /// Added to the delay after ESME_RTHROTTLED or ESME_RMSGQFUL, in milliseconds
    /// (at most `max_backoff_ms`).
    pub congestion_min_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 10,
            initial_backoff_ms: 1_000,
            max_backoff_ms: 300_000,
            multiplier: 2.0,
            jitter: Jitter::Equal,
            congestion_min_backoff_ms: 5_000,
        }
    }
}

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again at this time (milliseconds, same clock as `now_ms`), before the expiry.
    RetryAt(u64),
    /// The validity period is over, or would be before the next attempt: EXPIRED.
    GiveUpExpired,
    /// `max_attempts` reached: UNDELIVERABLE.
    GiveUpAttempts,
    /// The status is permanent (only from [`RetryPolicy::next_for_status`]): fail at once.
    GiveUpPermanent,
}

/// An invalid `[retry]` section.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RetryConfigError {
    #[error("retry.max_attempts must be at least 1")]
    NoAttempts,
    #[error("retry.initial_backoff_ms ({initial}) must be at most retry.max_backoff_ms ({max})")]
    InitialAboveMax { initial: u64, max: u64 },
    #[error("retry.congestion_min_backoff_ms ({min}) must be at most retry.max_backoff_ms ({max})")]
    CongestionAboveMax { min: u64, max: u64 },
    #[error("retry.multiplier must be a finite number >= 1.0, not {0}")]
    BadMultiplier(f64),
}

/// How a failed submit is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureClass {
    /// Retrying cannot help: fail the message now.
    Permanent,
    /// Retry with the normal backoff.
    Transient,
    /// The upstream asks us to slow down: retry with at least the congestion backoff.
    Congestion,
}

/// Statuses that fail a message at once: the message (not the moment) is wrong, so sending it
/// again would get the same answer.
///
/// | status | code | why |
/// | --- | --- | --- |
/// | ESME_RINVMSGLEN | 0x01 | message length |
/// | ESME_RINVCMDLEN | 0x02 | malformed PDU |
/// | ESME_RINVCMDID | 0x03 | operation not supported by the upstream |
/// | ESME_RINVPRTFLG | 0x06 | priority_flag |
/// | ESME_RINVREGDLVFLG | 0x07 | registered_delivery |
/// | ESME_RINVSRCADR | 0x0A | source address |
/// | ESME_RINVDSTADR | 0x0B | destination address |
/// | ESME_RINVMSGID | 0x0C | message id |
/// | ESME_RINVSERTYP | 0x15 | service_type |
/// | ESME_RINVNUMDESTS | 0x33 | number of destinations |
/// | ESME_RINVDLNAME | 0x34 | distribution list name |
/// | ESME_RINVDESTFLAG | 0x40 | dest_flag |
/// | ESME_RINVSUBREP | 0x42 | submit with replace |
/// | ESME_RINVESMCLASS | 0x43 | esm_class |
/// | ESME_RCNTSUBDL | 0x44 | distribution list not allowed |
/// | ESME_RINVSRCTON / ESME_RINVSRCNPI | 0x48 / 0x49 | source TON / NPI |
/// | ESME_RINVDSTTON / ESME_RINVDSTNPI | 0x50 / 0x51 | destination TON / NPI |
/// | ESME_RINVREPFLAG | 0x54 | replace_if_present_flag |
/// | ESME_RINVNUMMSGS | 0x55 | number of messages |
/// | ESME_RINVSCHED | 0x61 | schedule_delivery_time |
/// | ESME_RINVEXPIRY | 0x62 | validity_period |
/// | ESME_RINVDFTMSGID | 0x63 | sm_default_msg_id |
/// | ESME_RX_P_APPN / ESME_RX_R_APPN | 0x65 / 0x66 | receiver permanent error / rejected |
/// | ESME_RINVOPTPARSTREAM .. ESME_RINVOPTPARAMVAL | 0xC0 – 0xC4 | TLVs |
/// | ESME_RINVDCS (SMPP 5.0, sent by many 3.4 carriers) | 0x104 | data_coding |
///
/// Everything else is transient, unknown and vendor-specific codes included (a bounded number of
/// retries costs less than losing a message to a code we do not know): ESME_RSYSERR,
/// ESME_RINVBNDSTS, ESME_RSUBMITFAIL, ESME_RX_T_APPN, ESME_RDELIVERYFAILURE, ESME_RUNKNOWNERR...
/// ESME_RTHROTTLED (0x58) and ESME_RMSGQFUL (0x14) are transient with a longer backoff
/// ([`FailureClass::Congestion`]). ESME_ROK is not a failure; it is classed transient here only
/// so that the function is total.
pub const PERMANENT_STATUSES: &[CommandStatus] = &[
    CommandStatus::ESME_RINVMSGLEN,
    CommandStatus::ESME_RINVCMDLEN,
    CommandStatus::ESME_RINVCMDID,
    CommandStatus::ESME_RINVPRTFLG,
    CommandStatus::ESME_RINVREGDLVFLG,
    CommandStatus::ESME_RINVSRCADR,
    CommandStatus::ESME_RINVDSTADR,
    CommandStatus::ESME_RINVMSGID,
    CommandStatus::ESME_RINVSERTYP,
    CommandStatus::ESME_RINVNUMDESTS,
    CommandStatus::ESME_RINVDLNAME,
    CommandStatus::ESME_RINVDESTFLAG,
    CommandStatus::ESME_RINVSUBREP,
    CommandStatus::ESME_RINVESMCLASS,
    CommandStatus::ESME_RCNTSUBDL,
    CommandStatus::ESME_RINVSRCTON,
    CommandStatus::ESME_RINVSRCNPI,
    CommandStatus::ESME_RINVDSTTON,
    CommandStatus::ESME_RINVDSTNPI,
    CommandStatus::ESME_RINVREPFLAG,
    CommandStatus::ESME_RINVNUMMSGS,
    CommandStatus::ESME_RINVSCHED,
    CommandStatus::ESME_RINVEXPIRY,
    CommandStatus::ESME_RINVDFTMSGID,
    CommandStatus::ESME_RX_P_APPN,
    CommandStatus::ESME_RX_R_APPN,
    CommandStatus::ESME_RINVOPTPARSTREAM,
    CommandStatus::ESME_ROPTPARNOTALLWD,
    CommandStatus::ESME_RINVPARLEN,
    CommandStatus::ESME_RMISSINGOPTPARAM,
    CommandStatus::ESME_RINVOPTPARAMVAL,
    ESME_RINVDCS,
];

/// SMPP 5.0's "invalid data_coding", which SMPP 3.4 lacks but carriers send anyway.
pub const ESME_RINVDCS: CommandStatus = CommandStatus(0x0000_0104);

/// `true` when a submit that failed with `status` must not be retried (see [`PERMANENT_STATUSES`]).
pub fn is_permanent(status: CommandStatus) -> bool {
    PERMANENT_STATUSES.contains(&status)
}

/// `true` for ESME_RTHROTTLED and ESME_RMSGQFUL: retry, but slower.
pub fn is_congestion(status: CommandStatus) -> bool {
    status == CommandStatus::ESME_RTHROTTLED || status == CommandStatus::ESME_RMSGQFUL
}

/// The class of a submit failure with this status.
pub fn classify(status: CommandStatus) -> FailureClass {
    if is_permanent(status) {
        FailureClass::Permanent
    } else if is_congestion(status) {
        FailureClass::Congestion
    } else {
        FailureClass::Transient
    }
}

impl RetryPolicy {
    /// Checks the invariants the delay computation relies on.
    pub fn validate(&self) -> Result<(), RetryConfigError> {
        if self.max_attempts == 0 {
            return Err(RetryConfigError::NoAttempts);
        }
        if self.initial_backoff_ms > self.max_backoff_ms {
            return Err(RetryConfigError::InitialAboveMax {
                initial: self.initial_backoff_ms,
                max: self.max_backoff_ms,
            });
        }
        if self.congestion_min_backoff_ms > self.max_backoff_ms {
            return Err(RetryConfigError::CongestionAboveMax {
                min: self.congestion_min_backoff_ms,
                max: self.max_backoff_ms,
            });
        }
        if !self.multiplier.is_finite() || self.multiplier < 1.0 {
            return Err(RetryConfigError::BadMultiplier(self.multiplier));
        }
        Ok(())
    }

    /// The delay before jitter after failed attempt `attempt` (1-based; 0 is treated as 1).
    pub fn base_delay_ms(&self, attempt: u32) -> u64 {
        // Past 2^11 doublings every finite multiplier >= 2 has overflowed f64 anyway; capping the
        // exponent keeps powi cheap and the result well defined.
        let exponent = attempt.saturating_sub(1).min(2048) as i32;
        let multiplier = if self.multiplier.is_finite() {
            self.multiplier.max(1.0)
        } else {
            1.0
        };
        let raw = self.initial_backoff_ms as f64 * multiplier.powi(exponent);
        if raw.is_finite() && raw < self.max_backoff_ms as f64 {
            // `as` saturates, and raw < max_backoff_ms fits in u64.
            raw as u64
        } else {
            self.max_backoff_ms
        }
    }

    fn jittered(&self, base: u64, rng: &mut impl Rng) -> u64 {
        match self.jitter {
            Jitter::None => base,
            Jitter::Full => rng.random_range(0..=base),
            Jitter::Equal => {
                let half = base / 2;
                // base - half >= half, so the result is in [base/2, base].
                half + rng.random_range(0..=base - half)
            }
        }
    }

    fn decide(&self, attempt: u32, now_ms: u64, expires_at_ms: Option<u64>, delay_ms: u64) -> RetryDecision {
        if expires_at_ms.is_some_and(|expiry| now_ms >= expiry) {
            return RetryDecision::GiveUpExpired;
        }
        if attempt >= self.max_attempts {
            return RetryDecision::GiveUpAttempts;
        }
        let at = now_ms.saturating_add(delay_ms);
        match expires_at_ms {
            Some(expiry) if at >= expiry => RetryDecision::GiveUpExpired,
            _ => RetryDecision::RetryAt(at),
        }
    }

    /// After transient failure number `attempt` (1 after the first submit failed), at `now_ms`,
    /// for a message valid until `expires_at_ms` (if it has a validity period): when to retry, or
    /// why not. Never returns [`RetryDecision::GiveUpPermanent`].
    pub fn next(&self, attempt: u32, now_ms: u64, expires_at_ms: Option<u64>, rng: &mut impl Rng) -> RetryDecision {
        let delay = self.jittered(self.base_delay_ms(attempt), rng).min(self.max_backoff_ms);
        self.decide(attempt, now_ms, expires_at_ms, delay)
    }

    /// Like [`next`](Self::next) after an ESME_RTHROTTLED / ESME_RMSGQFUL: the delay is at least
    /// `congestion_min_backoff_ms` (and at most `max_backoff_ms`).
    pub fn next_congested(
        &self,
        attempt: u32,
        now_ms: u64,
        expires_at_ms: Option<u64>,
        rng: &mut impl Rng,
    ) -> RetryDecision {
        let delay = self
            .congestion_min_backoff_ms
            .saturating_add(self.jittered(self.base_delay_ms(attempt), rng))
            .min(self.max_backoff_ms);
        self.decide(attempt, now_ms, expires_at_ms, delay)
    }

    /// The decision after an upstream answered `status` to attempt `attempt`:
    /// [`RetryDecision::GiveUpPermanent`] for a permanent status, otherwise
    /// [`next_congested`](Self::next_congested) or [`next`](Self::next) by [`classify`].
    pub fn next_for_status(
        &self,
        status: CommandStatus,
        attempt: u32,
        now_ms: u64,
        expires_at_ms: Option<u64>,
        rng: &mut impl Rng,
    ) -> RetryDecision {
        match classify(status) {
            FailureClass::Permanent => RetryDecision::GiveUpPermanent,
            FailureClass::Congestion => self.next_congested(attempt, now_ms, expires_at_ms, rng),
            FailureClass::Transient => self.next(attempt, now_ms, expires_at_ms, rng),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    fn fixed() -> RetryPolicy {
        RetryPolicy {
            jitter: Jitter::None,
            ..RetryPolicy::default()
        }
    }

    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn defaults_and_toml() {
        let p: RetryPolicy = toml::from_str("").unwrap();
        assert_eq!(p, RetryPolicy::default());
        p.validate().unwrap();
        let p: RetryPolicy = toml::from_str("max_attempts = 3\njitter = \"full\"\nmultiplier = 1.5").unwrap();
        assert_eq!((p.max_attempts, p.jitter, p.multiplier), (3, Jitter::Full, 1.5));
        assert_eq!(p.initial_backoff_ms, 1_000);
        let err = toml::from_str::<RetryPolicy>("max_attempt = 3").unwrap_err();
        assert!(err.to_string().contains("max_attempt"), "{err}");
        assert!(toml::from_str::<RetryPolicy>("jitter = \"some\"").is_err());
    }

    #[test]
    fn validation() {
        let bad = |f: fn(&mut RetryPolicy)| {
            let mut p = RetryPolicy::default();
            f(&mut p);
            p.validate().unwrap_err()
        };
        assert_eq!(bad(|p| p.max_attempts = 0), RetryConfigError::NoAttempts);
        assert_eq!(
            bad(|p| p.initial_backoff_ms = 400_000),
            RetryConfigError::InitialAboveMax {
                initial: 400_000,
                max: 300_000
            }
        );
        assert_eq!(
            bad(|p| p.congestion_min_backoff_ms = 400_000),
            RetryConfigError::CongestionAboveMax {
                min: 400_000,
                max: 300_000
            }
        );
        assert_eq!(bad(|p| p.multiplier = 0.5), RetryConfigError::BadMultiplier(0.5));
        assert!(matches!(
            bad(|p| p.multiplier = f64::NAN),
            RetryConfigError::BadMultiplier(_)
        ));
        assert!(matches!(
            bad(|p| p.multiplier = f64::INFINITY),
            RetryConfigError::BadMultiplier(_)
        ));
    }

    #[test]
    fn exponential_backoff_capped_at_max() {
        let p = RetryPolicy {
            max_attempts: 100,
            ..fixed()
        };
        let delays: Vec<u64> = (1..=11)
            .map(|a| match p.next(a, NOW, None, &mut rng()) {
                RetryDecision::RetryAt(at) => at - NOW,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            delays,
            [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000, 300_000]
        );
        assert_eq!(p.base_delay_ms(0), 1_000, "attempt 0 is treated as 1");
        let slow = RetryPolicy {
            multiplier: 1.5,
            ..p.clone()
        };
        assert_eq!(slow.base_delay_ms(3), 2_250);
        let flat = RetryPolicy { multiplier: 1.0, ..p };
        assert_eq!(flat.base_delay_ms(50), 1_000);
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let p = RetryPolicy {
            max_attempts: 3,
            ..fixed()
        };
        assert_eq!(p.next(1, NOW, None, &mut rng()), RetryDecision::RetryAt(NOW + 1_000));
        assert_eq!(p.next(2, NOW, None, &mut rng()), RetryDecision::RetryAt(NOW + 2_000));
        assert_eq!(p.next(3, NOW, None, &mut rng()), RetryDecision::GiveUpAttempts);
        assert_eq!(p.next(4, NOW, None, &mut rng()), RetryDecision::GiveUpAttempts);
        let once = RetryPolicy {
            max_attempts: 1,
            ..fixed()
        };
        assert_eq!(once.next(1, NOW, None, &mut rng()), RetryDecision::GiveUpAttempts);
    }

    #[test]
    fn never_scheduled_past_the_validity_period() {
        let p = fixed();
        // Plenty of time left.
        assert_eq!(
            p.next(1, NOW, Some(NOW + 60_000), &mut rng()),
            RetryDecision::RetryAt(NOW + 1_000)
        );
        // The retry would land exactly at, or after, the expiry.
        assert_eq!(
            p.next(1, NOW, Some(NOW + 1_000), &mut rng()),
            RetryDecision::GiveUpExpired
        );
        assert_eq!(
            p.next(5, NOW, Some(NOW + 10_000), &mut rng()),
            RetryDecision::GiveUpExpired
        );
        // Already expired.
        assert_eq!(p.next(1, NOW, Some(NOW), &mut rng()), RetryDecision::GiveUpExpired);
        assert_eq!(p.next(1, NOW, Some(NOW - 1), &mut rng()), RetryDecision::GiveUpExpired);
        // Expired and out of attempts: expired wins.
        assert_eq!(p.next(10, NOW, Some(NOW - 1), &mut rng()), RetryDecision::GiveUpExpired);
        // Out of attempts with time left.
        assert_eq!(
            p.next(10, NOW, Some(NOW + 1_000_000), &mut rng()),
            RetryDecision::GiveUpAttempts
        );
    }

    #[test]
    fn equal_jitter_bounds() {
        let p = RetryPolicy::default();
        let mut rng = rng();
        let (mut lo, mut hi) = (u64::MAX, 0);
        for _ in 0..10_000 {
            let RetryDecision::RetryAt(at) = p.next(4, NOW, None, &mut rng) else {
                panic!()
            };
            let d = at - NOW;
            assert!((4_000..=8_000).contains(&d), "{d}");
            lo = lo.min(d);
            hi = hi.max(d);
        }
        assert!(lo < 4_100 && hi > 7_900, "spread over the range: {lo}..{hi}");
    }

    #[test]
    fn full_jitter_bounds() {
        let p = RetryPolicy {
            jitter: Jitter::Full,
            ..RetryPolicy::default()
        };
        let mut rng = rng();
        let (mut lo, mut hi) = (u64::MAX, 0);
        for _ in 0..10_000 {
            let RetryDecision::RetryAt(at) = p.next(4, NOW, None, &mut rng) else {
                panic!()
            };
            let d = at - NOW;
            assert!(d <= 8_000, "{d}");
            lo = lo.min(d);
            hi = hi.max(d);
        }
        assert!(lo < 100 && hi > 7_900, "spread over the range: {lo}..{hi}");
    }

    #[test]
    fn jitter_is_deterministic_for_a_seeded_rng() {
        let p = RetryPolicy::default();
        let a: Vec<_> = (1..8)
            .map(|n| p.next(n, NOW, None, &mut StdRng::seed_from_u64(n.into())))
            .collect();
        let b: Vec<_> = (1..8)
            .map(|n| p.next(n, NOW, None, &mut StdRng::seed_from_u64(n.into())))
            .collect();
        assert_eq!(a, b);
    }

    #[test]
    fn congestion_statuses_back_off_longer() {
        let p = fixed();
        for status in [CommandStatus::ESME_RTHROTTLED, CommandStatus::ESME_RMSGQFUL] {
            assert_eq!(classify(status), FailureClass::Congestion);
            assert!(!is_permanent(status));
            assert_eq!(
                p.next_for_status(status, 1, NOW, None, &mut rng()),
                RetryDecision::RetryAt(NOW + 5_000 + 1_000)
            );
            // Still capped at max_backoff.
            assert_eq!(
                p.next_for_status(status, 30, NOW, None, &mut rng()),
                RetryDecision::GiveUpAttempts
            );
            let many = RetryPolicy {
                max_attempts: 100,
                ..fixed()
            };
            assert_eq!(
                many.next_for_status(status, 30, NOW, None, &mut rng()),
                RetryDecision::RetryAt(NOW + 300_000)
            );
            // The longer delay can run into the expiry where a normal one would not.
            assert_eq!(
                p.next(1, NOW, Some(NOW + 3_000), &mut rng()),
                RetryDecision::RetryAt(NOW + 1_000)
            );
            assert_eq!(
                p.next_for_status(status, 1, NOW, Some(NOW + 3_000), &mut rng()),
                RetryDecision::GiveUpExpired
            );
        }
        // With jitter the congestion delay stays in [min, max].
        let p = RetryPolicy {
            jitter: Jitter::Full,
            ..RetryPolicy::default()
        };
        let mut rng = rng();
        for attempt in 1..10 {
            let RetryDecision::RetryAt(at) = p.next_congested(attempt, NOW, None, &mut rng) else {
                panic!()
            };
            assert!((5_000..=300_000).contains(&(at - NOW)));
        }
    }

    #[test]
    fn permanent_statuses_fail_at_once() {
        let p = RetryPolicy::default();
        for &status in PERMANENT_STATUSES {
            assert!(is_permanent(status), "{status}");
            assert_eq!(classify(status), FailureClass::Permanent);
            assert_eq!(
                p.next_for_status(status, 1, NOW, None, &mut rng()),
                RetryDecision::GiveUpPermanent,
                "{status}"
            );
        }
        for status in [
            CommandStatus::ESME_RINVDSTADR,
            CommandStatus::ESME_RINVSRCADR,
            CommandStatus::ESME_RINVSRCTON,
            CommandStatus::ESME_RINVDSTNPI,
            CommandStatus::ESME_RINVESMCLASS,
            CommandStatus::ESME_RINVMSGLEN,
            CommandStatus::ESME_RINVREGDLVFLG,
            CommandStatus::ESME_RINVMSGID,
            CommandStatus(0x104),
        ] {
            assert!(is_permanent(status), "{status}");
        }
    }

    #[test]
    fn transient_statuses_are_retried() {
        let p = fixed();
        for status in [
            CommandStatus::ESME_RSYSERR,
            CommandStatus::ESME_RINVBNDSTS,
            CommandStatus::ESME_RSUBMITFAIL,
            CommandStatus::ESME_RX_T_APPN,
            CommandStatus::ESME_RDELIVERYFAILURE,
            CommandStatus::ESME_RUNKNOWNERR,
            CommandStatus(0x400),
            CommandStatus(0x0000_04FF),
        ] {
            assert_eq!(classify(status), FailureClass::Transient, "{status}");
            assert_eq!(
                p.next_for_status(status, 1, NOW, None, &mut rng()),
                RetryDecision::RetryAt(NOW + 1_000)
            );
        }
    }

    #[test]
    fn huge_attempt_numbers_and_clock_values_do_not_overflow() {
        let p = RetryPolicy {
            max_attempts: u32::MAX,
            multiplier: 10.0,
            ..RetryPolicy::default()
        };
        for attempt in [64, 1_000, 1 << 20, u32::MAX - 1] {
            assert_eq!(p.base_delay_ms(attempt), 300_000);
            let RetryDecision::RetryAt(at) = p.next(attempt, NOW, None, &mut rng()) else {
                panic!()
            };
            assert!((NOW + 150_000..=NOW + 300_000).contains(&at));
        }
        assert_eq!(p.next(u32::MAX, NOW, None, &mut rng()), RetryDecision::GiveUpAttempts);
        // A clock at the end of u64 saturates instead of wrapping.
        assert_eq!(
            p.next(1, u64::MAX - 10, None, &mut rng()),
            RetryDecision::RetryAt(u64::MAX)
        );
        assert_eq!(
            p.next(1, u64::MAX - 10, Some(u64::MAX), &mut rng()),
            RetryDecision::GiveUpExpired
        );
        // Huge configured delays.
        let huge = RetryPolicy {
            max_attempts: u32::MAX,
            initial_backoff_ms: u64::MAX / 2,
            max_backoff_ms: u64::MAX,
            congestion_min_backoff_ms: u64::MAX,
            jitter: Jitter::Full,
            multiplier: 3.0,
        };
        huge.validate().unwrap();
        for attempt in [1, 2, 100, u32::MAX - 1] {
            assert!(matches!(
                huge.next(attempt, NOW, None, &mut rng()),
                RetryDecision::RetryAt(_)
            ));
            assert_eq!(
                huge.next_congested(attempt, NOW, None, &mut rng()),
                RetryDecision::RetryAt(u64::MAX)
            );
        }
    }

    fn policy_strategy() -> impl Strategy<Value = RetryPolicy> {
        (
            1u32..50,
            0u64..100_000,
            0u64..1_000_000,
            1.0f64..10.0,
            prop_oneof![Just(Jitter::Equal), Just(Jitter::Full), Just(Jitter::None)],
            0u64..1_000_000,
        )
            .prop_map(|(max_attempts, initial, extra, multiplier, jitter, congestion)| {
                let max = initial + extra;
                RetryPolicy {
                    max_attempts,
                    initial_backoff_ms: initial,
                    max_backoff_ms: max,
                    multiplier,
                    jitter,
                    congestion_min_backoff_ms: congestion.min(max),
                }
            })
    }

    proptest! {
        #[test]
        fn next_retry_is_within_now_and_min_of_max_backoff_and_expiry(
            policy in policy_strategy(),
            attempt in any::<u32>(),
            now in 0u64..u64::MAX / 2,
            expiry_offset in proptest::option::of(0u64..2_000_000),
            status in prop_oneof![
                Just(CommandStatus::ESME_RSYSERR),
                Just(CommandStatus::ESME_RTHROTTLED),
                Just(CommandStatus::ESME_RMSGQFUL),
                Just(CommandStatus::ESME_RINVDSTADR),
                any::<u32>().prop_map(CommandStatus),
            ],
            seed in any::<u64>(),
        ) {
            policy.validate().unwrap();
            let expiry = expiry_offset.map(|o| now + o);
            let mut rng = StdRng::seed_from_u64(seed);
            let decision = policy.next_for_status(status, attempt, now, expiry, &mut rng);
            match decision {
                RetryDecision::RetryAt(at) => {
                    prop_assert!(!is_permanent(status));
                    prop_assert!(attempt < policy.max_attempts);
                    prop_assert!(at >= now);
                    prop_assert!(at <= now + policy.max_backoff_ms);
                    if let Some(expiry) = expiry {
                        prop_assert!(at < expiry);
                    }
                    if is_congestion(status) {
                        prop_assert!(at >= now + policy.congestion_min_backoff_ms);
                    }
                }
                RetryDecision::GiveUpExpired => prop_assert!(expiry.is_some()),
                RetryDecision::GiveUpAttempts => prop_assert!(attempt >= policy.max_attempts),
                RetryDecision::GiveUpPermanent => prop_assert!(is_permanent(status)),
            }
        }
    }
}
