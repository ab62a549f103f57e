//! Retry budgets: how many retries a caller may make, whatever its per-job
//! attempt limit says, so that a failing downstream sees a bounded share of
//! extra load instead of every caller's full retry multiplier.
//!
//! Four kinds, each the scheme of a well-known client library:
//! - `token-bucket`: gRPC retry throttling. Every failure takes a token,
//!   every success returns `tokens_per_success`; retries stop while the
//!   bucket is at most half full.
//! - `finagle`: Finagle's `RetryBudget`. Each first try deposits `percent` %
//!   of a retry, deposits and withdrawals expire after `ttl_s`, and a reserve
//!   of `min_per_s × ttl_s` retries is always there, so retries in any ttl
//!   window ≤ percent × requests + min_per_s × ttl.
//! - `aws-standard`: the AWS SDKs' "standard" retry quota. A bucket of
//!   `tokens`; a retry costs `retry_cost` (`timeout_cost` after a timeout)
//!   and is denied when the bucket holds less; a success on a first try puts
//!   back `success_refund`, a successful retry puts back what it cost, never
//!   above the initial size (as the SDKs' `releaseRetryToken` does).
//! - `client-bucket`: the per-client bucket of Brooker's "Fixing retries with
//!   token buckets": starts full at `size`, each first try adds
//!   `per_first_try`, a retry needs more than `threshold` tokens (and at least
//!   `cost`) and spends `cost`.
//!
//! Amounts are kept in thousandths of a token (or whole tokens for the AWS
//! quota, whose amounts are integers), so the arithmetic is exact and the
//! same on every platform.

use super::config_error::{ensure, ConfigError};
use super::retry_gate::{RetryCause, SendOutcome};
use super::window::SecondWindow;
use crate::time::Time;
use serde::{Deserialize, Serialize};

/// Which budget, with its settings. In TOML, `kind` picks the budget; a
/// table without `kind` is a `token-bucket` (the form older files use).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", try_from = "BudgetFields")]
pub enum BudgetConfig {
    TokenBucket(TokenBucketConfig),
    Finagle(FinagleConfig),
    AwsStandard(AwsStandardConfig),
    ClientBucket(ClientBucketConfig),
}

/// gRPC-style retry throttling.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenBucketConfig {
    /// Size of the token bucket; retries stop when it is half empty.
    pub tokens_max: f64,
    /// Tokens a success puts back (a failure takes one).
    pub tokens_per_success: f64,
}

impl Default for TokenBucketConfig {
    fn default() -> Self {
        TokenBucketConfig {
            tokens_max: 10.0,
            tokens_per_success: 0.1,
        }
    }
}

/// Finagle's `RetryBudget`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FinagleConfig {
    /// Retries allowed per 100 first tries in the window.
    pub percent: f64,
    /// Retries allowed per second of the window on top (the reserve).
    pub min_per_s: f64,
    /// Window over which deposits and withdrawals count, whole seconds.
    pub ttl_s: u32,
}

impl Default for FinagleConfig {
    fn default() -> Self {
        FinagleConfig {
            percent: 20.0,
            min_per_s: 10.0,
            ttl_s: 10,
        }
    }
}

/// The AWS SDKs' standard retry quota.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsStandardConfig {
    /// Initial and largest size of the quota.
    pub tokens: u32,
    /// What a retry after an error costs.
    pub retry_cost: u32,
    /// What a retry after a timeout costs.
    pub timeout_cost: u32,
    /// What a success on a first try puts back.
    pub success_refund: u32,
}

impl Default for AwsStandardConfig {
    fn default() -> Self {
        AwsStandardConfig {
            tokens: 500,
            retry_cost: 5,
            timeout_cost: 10,
            success_refund: 1,
        }
    }
}

/// A small token bucket filled by first tries.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientBucketConfig {
    /// Initial and largest number of tokens.
    pub size: f64,
    /// Tokens each first try adds.
    pub per_first_try: f64,
    /// A retry needs more tokens than this.
    pub threshold: f64,
    /// Tokens a retry spends.
    pub cost: f64,
}

impl Default for ClientBucketConfig {
    fn default() -> Self {
        ClientBucketConfig {
            size: 5.0,
            per_first_try: 0.1,
            threshold: 1.0,
            cost: 1.0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum BudgetKind {
    TokenBucket,
    Finagle,
    AwsStandard,
    ClientBucket,
}

/// Every budget's fields at once, so that a missing `kind` can mean
/// `token-bucket` and a field of another kind gets a message naming it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetFields {
    kind: Option<BudgetKind>,
    tokens_max: Option<f64>,
    tokens_per_success: Option<f64>,
    percent: Option<f64>,
    min_per_s: Option<f64>,
    ttl_s: Option<u32>,
    tokens: Option<u32>,
    retry_cost: Option<u32>,
    timeout_cost: Option<u32>,
    success_refund: Option<u32>,
    size: Option<f64>,
    per_first_try: Option<f64>,
    threshold: Option<f64>,
    cost: Option<f64>,
}

impl TryFrom<BudgetFields> for BudgetConfig {
    type Error = String;

    fn try_from(f: BudgetFields) -> Result<Self, String> {
        let kind = f.kind.unwrap_or(BudgetKind::TokenBucket);
        let (name, own): (&str, &[&str]) = match kind {
            BudgetKind::TokenBucket => ("token-bucket", &["tokens_max", "tokens_per_success"]),
            BudgetKind::Finagle => ("finagle", &["percent", "min_per_s", "ttl_s"]),
            BudgetKind::AwsStandard => (
                "aws-standard",
                &["tokens", "retry_cost", "timeout_cost", "success_refund"],
            ),
            BudgetKind::ClientBucket => (
                "client-bucket",
                &["size", "per_first_try", "threshold", "cost"],
            ),
        };
        let given = [
            ("tokens_max", f.tokens_max.is_some()),
            ("tokens_per_success", f.tokens_per_success.is_some()),
            ("percent", f.percent.is_some()),
            ("min_per_s", f.min_per_s.is_some()),
            ("ttl_s", f.ttl_s.is_some()),
            ("tokens", f.tokens.is_some()),
            ("retry_cost", f.retry_cost.is_some()),
            ("timeout_cost", f.timeout_cost.is_some()),
            ("success_refund", f.success_refund.is_some()),
            ("size", f.size.is_some()),
            ("per_first_try", f.per_first_try.is_some()),
            ("threshold", f.threshold.is_some()),
            ("cost", f.cost.is_some()),
        ];
        if let Some((field, _)) = given.iter().find(|(n, set)| *set && !own.contains(n)) {
            return Err(format!(
                "`{field}` is not a setting of a `{name}` budget; its settings are {}",
                own.join(", ")
            ));
        }
        Ok(match kind {
            BudgetKind::TokenBucket => {
                let d = TokenBucketConfig::default();
                BudgetConfig::TokenBucket(TokenBucketConfig {
                    tokens_max: f.tokens_max.unwrap_or(d.tokens_max),
                    tokens_per_success: f.tokens_per_success.unwrap_or(d.tokens_per_success),
                })
            }
            BudgetKind::Finagle => {
                let d = FinagleConfig::default();
                BudgetConfig::Finagle(FinagleConfig {
                    percent: f.percent.unwrap_or(d.percent),
                    min_per_s: f.min_per_s.unwrap_or(d.min_per_s),
                    ttl_s: f.ttl_s.unwrap_or(d.ttl_s),
                })
            }
            BudgetKind::AwsStandard => {
                let d = AwsStandardConfig::default();
                BudgetConfig::AwsStandard(AwsStandardConfig {
                    tokens: f.tokens.unwrap_or(d.tokens),
                    retry_cost: f.retry_cost.unwrap_or(d.retry_cost),
                    timeout_cost: f.timeout_cost.unwrap_or(d.timeout_cost),
                    success_refund: f.success_refund.unwrap_or(d.success_refund),
                })
            }
            BudgetKind::ClientBucket => {
                let d = ClientBucketConfig::default();
                BudgetConfig::ClientBucket(ClientBucketConfig {
                    size: f.size.unwrap_or(d.size),
                    per_first_try: f.per_first_try.unwrap_or(d.per_first_try),
                    threshold: f.threshold.unwrap_or(d.threshold),
                    cost: f.cost.unwrap_or(d.cost),
                })
            }
        })
    }
}

/// Largest token amount any bucket may hold, so thousandths fit in `u64`
/// with room to spare.
const TOKENS_LIMIT: f64 = 1e9;

fn ensure_tokens(value: f64, field: &str, min_exclusive: bool) -> Result<(), ConfigError> {
    let low_ok = if min_exclusive {
        value > 0.0
    } else {
        value >= 0.0
    };
    ensure(
        value.is_finite() && low_ok && value <= TOKENS_LIMIT,
        field,
        format!(
            "must be a number of tokens {} 0 and ≤ {TOKENS_LIMIT}, got {value}",
            if min_exclusive { ">" } else { "≥" }
        ),
    )
}

impl BudgetConfig {
    /// Checks the settings of whichever kind this is.
    pub fn check(&self) -> Result<(), ConfigError> {
        match self {
            BudgetConfig::TokenBucket(b) => {
                ensure(
                    b.tokens_max.is_finite() && (1.0..=TOKENS_LIMIT).contains(&b.tokens_max),
                    "tokens_max",
                    "must be ≥ 1",
                )?;
                ensure(
                    b.tokens_per_success.is_finite() && b.tokens_per_success > 0.0,
                    "tokens_per_success",
                    "must be > 0",
                )
            }
            BudgetConfig::Finagle(b) => {
                ensure(
                    b.percent.is_finite() && (0.0..=100_000.0).contains(&b.percent),
                    "percent",
                    format!("must be between 0 and 100000 (%), got {}", b.percent),
                )?;
                ensure(
                    b.min_per_s.is_finite() && (0.0..=1e6).contains(&b.min_per_s),
                    "min_per_s",
                    format!("must be between 0 and 1e6 retries/s, got {}", b.min_per_s),
                )?;
                ensure(
                    (1..=60).contains(&b.ttl_s),
                    "ttl_s",
                    format!(
                        "must be 1 to 60 whole seconds (as Finagle's), got {}",
                        b.ttl_s
                    ),
                )
            }
            BudgetConfig::AwsStandard(b) => {
                ensure(b.tokens >= 1, "tokens", "must be ≥ 1")?;
                ensure(b.retry_cost >= 1, "retry_cost", "must be ≥ 1")?;
                ensure(b.timeout_cost >= 1, "timeout_cost", "must be ≥ 1")
            }
            BudgetConfig::ClientBucket(b) => {
                ensure_tokens(b.size, "size", true)?;
                ensure_tokens(b.per_first_try, "per_first_try", false)?;
                ensure_tokens(b.threshold, "threshold", false)?;
                ensure_tokens(b.cost, "cost", true)
            }
        }
    }
}

fn milli(tokens: f64) -> u64 {
    (tokens * 1000.0).round() as u64
}

/// A budget's state.
#[derive(Clone, Debug)]
pub(super) enum Budget {
    TokenBucket {
        milli_tokens: u64,
        milli_tokens_max: u64,
        milli_per_success: u64,
    },
    Finagle {
        /// Net thousandths of a retry deposited (first tries) less withdrawn
        /// (retries), per second over the ttl.
        window: SecondWindow<1>,
        milli_per_request: i64,
        milli_reserve: i64,
    },
    AwsStandard {
        tokens: u64,
        cfg: AwsStandardConfig,
    },
    ClientBucket {
        milli_tokens: u64,
        milli_size: u64,
        milli_per_first_try: u64,
        milli_threshold: u64,
        milli_cost: u64,
    },
}

/// Thousandths of a retry one retry withdraws from a Finagle budget.
const FINAGLE_WITHDRAWAL: i64 = 1000;

impl Budget {
    /// A full budget; `cfg` has passed [`BudgetConfig::check`].
    pub(super) fn new(cfg: &BudgetConfig) -> Budget {
        match *cfg {
            BudgetConfig::TokenBucket(b) => {
                // Truncation, as the bucket has always computed it.
                let max = (b.tokens_max * 1000.0) as u64;
                Budget::TokenBucket {
                    milli_tokens: max,
                    milli_tokens_max: max,
                    milli_per_success: ((b.tokens_per_success * 1000.0) as u64).max(1),
                }
            }
            BudgetConfig::Finagle(b) => Budget::Finagle {
                window: SecondWindow::new(b.ttl_s),
                milli_per_request: (b.percent * 10.0).round() as i64,
                milli_reserve: (b.min_per_s * f64::from(b.ttl_s) * 1000.0).round() as i64,
            },
            BudgetConfig::AwsStandard(b) => Budget::AwsStandard {
                tokens: u64::from(b.tokens),
                cfg: b,
            },
            BudgetConfig::ClientBucket(b) => Budget::ClientBucket {
                milli_tokens: milli(b.size),
                milli_size: milli(b.size),
                milli_per_first_try: milli(b.per_first_try),
                milli_threshold: milli(b.threshold),
                milli_cost: milli(b.cost).max(1),
            },
        }
    }

    /// A send goes out; first tries pay into the budgets that earn from them.
    pub(super) fn on_send(&mut self, now: Time, retry: bool) {
        if retry {
            return;
        }
        match self {
            Budget::Finagle {
                window,
                milli_per_request,
                ..
            } => window.add(now, 0, *milli_per_request),
            Budget::ClientBucket {
                milli_tokens,
                milli_size,
                milli_per_first_try,
                ..
            } => *milli_tokens = (*milli_tokens + *milli_per_first_try).min(*milli_size),
            Budget::TokenBucket { .. } | Budget::AwsStandard { .. } => {}
        }
    }

    /// May a retry go out? Spends what it costs when it may.
    pub(super) fn try_withdraw(&mut self, now: Time, cause: RetryCause) -> bool {
        match self {
            Budget::TokenBucket {
                milli_tokens,
                milli_tokens_max,
                ..
            } => *milli_tokens > *milli_tokens_max / 2,
            Budget::Finagle {
                window,
                milli_reserve,
                ..
            } => {
                let ok = window.sum(now, 0) + *milli_reserve >= FINAGLE_WITHDRAWAL;
                if ok {
                    window.add(now, 0, -FINAGLE_WITHDRAWAL);
                }
                ok
            }
            Budget::AwsStandard { tokens, cfg } => {
                let cost = aws_cost(cfg, cause);
                let ok = *tokens >= cost;
                if ok {
                    *tokens -= cost;
                }
                ok
            }
            Budget::ClientBucket {
                milli_tokens,
                milli_threshold,
                milli_cost,
                ..
            } => {
                let ok = *milli_tokens > *milli_threshold && *milli_tokens >= *milli_cost;
                if ok {
                    *milli_tokens -= *milli_cost;
                }
                ok
            }
        }
    }

    /// How a send ended: the token bucket earns from successes and pays for
    /// failures; the AWS quota refunds successes.
    pub(super) fn on_outcome(&mut self, outcome: SendOutcome) {
        match self {
            Budget::TokenBucket {
                milli_tokens,
                milli_tokens_max,
                milli_per_success,
            } => {
                *milli_tokens = if outcome.is_success() {
                    (*milli_tokens + *milli_per_success).min(*milli_tokens_max)
                } else {
                    milli_tokens.saturating_sub(1000)
                }
            }
            Budget::AwsStandard { tokens, cfg } => {
                let refund = match outcome {
                    SendOutcome::Success => u64::from(cfg.success_refund),
                    SendOutcome::RetrySuccess { cause } => aws_cost(cfg, cause),
                    _ => 0,
                };
                *tokens = (*tokens + refund).min(u64::from(cfg.tokens));
            }
            Budget::Finagle { .. } | Budget::ClientBucket { .. } => {}
        }
    }
}

fn aws_cost(cfg: &AwsStandardConfig, cause: RetryCause) -> u64 {
    u64::from(match cause {
        RetryCause::Error => cfg.retry_cost,
        RetryCause::Timeout => cfg.timeout_cost,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<BudgetConfig, String> {
        #[derive(Deserialize)]
        struct W {
            budget: BudgetConfig,
        }
        toml::from_str::<W>(toml_text)
            .map(|w| w.budget)
            .map_err(|e| e.to_string())
    }

    fn at(s: f64) -> Time {
        Time::from_secs_f64(s)
    }

    #[test]
    fn a_table_without_kind_is_a_token_bucket() {
        assert_eq!(
            parse("budget = { tokens_max = 4, tokens_per_success = 0.5 }"),
            Ok(BudgetConfig::TokenBucket(TokenBucketConfig {
                tokens_max: 4.0,
                tokens_per_success: 0.5
            }))
        );
        assert_eq!(
            parse(r#"budget = { kind = "finagle" }"#),
            Ok(BudgetConfig::Finagle(FinagleConfig::default()))
        );
        assert_eq!(
            parse(r#"budget = { kind = "aws-standard", timeout_cost = 7 }"#),
            Ok(BudgetConfig::AwsStandard(AwsStandardConfig {
                timeout_cost: 7,
                ..AwsStandardConfig::default()
            }))
        );
    }

    #[test]
    fn a_field_of_another_kind_is_named() {
        let err = parse(r#"budget = { kind = "client-bucket", percent = 20 }"#).unwrap_err();
        assert!(
            err.contains("`percent` is not a setting of a `client-bucket`"),
            "{err}"
        );
        let err = parse("budget = { size = 5 }").unwrap_err();
        assert!(err.contains("`size`"), "{err}");
        let err = parse("budget = { sizes = 5 }").unwrap_err();
        assert!(err.contains("sizes"), "{err}");
    }

    #[test]
    fn serialises_back_to_what_it_parses() {
        for b in [
            BudgetConfig::TokenBucket(TokenBucketConfig::default()),
            BudgetConfig::Finagle(FinagleConfig::default()),
            BudgetConfig::AwsStandard(AwsStandardConfig::default()),
            BudgetConfig::ClientBucket(ClientBucketConfig::default()),
        ] {
            let json = serde_json::to_string(&b).expect("serialises");
            let back: BudgetConfig = serde_json::from_str(&json).expect(&json);
            assert_eq!(back, b, "{json}");
        }
    }

    #[test]
    fn checks_name_the_field() {
        let bad = [
            (
                BudgetConfig::Finagle(FinagleConfig {
                    ttl_s: 0,
                    ..FinagleConfig::default()
                }),
                "ttl_s",
            ),
            (
                BudgetConfig::Finagle(FinagleConfig {
                    percent: -1.0,
                    ..FinagleConfig::default()
                }),
                "percent",
            ),
            (
                BudgetConfig::AwsStandard(AwsStandardConfig {
                    retry_cost: 0,
                    ..AwsStandardConfig::default()
                }),
                "retry_cost",
            ),
            (
                BudgetConfig::ClientBucket(ClientBucketConfig {
                    cost: f64::NAN,
                    ..ClientBucketConfig::default()
                }),
                "cost",
            ),
        ];
        for (cfg, field) in bad {
            assert_eq!(cfg.check().map_err(|e| e.field), Err(field.to_owned()));
        }
        assert_eq!(
            BudgetConfig::Finagle(FinagleConfig::default()).check(),
            Ok(())
        );
    }

    #[test]
    fn finagle_reserve_then_share_of_requests_then_expiry() {
        let mut b = Budget::new(&BudgetConfig::Finagle(FinagleConfig {
            percent: 50.0,
            min_per_s: 0.2,
            ttl_s: 10,
        }));
        // Reserve: 0.2/s × 10 s = 2 retries.
        assert!(b.try_withdraw(at(0.0), RetryCause::Error));
        assert!(b.try_withdraw(at(0.0), RetryCause::Error));
        assert!(!b.try_withdraw(at(0.0), RetryCause::Error));
        // Two first tries at 50 % earn one more.
        b.on_send(at(1.0), false);
        b.on_send(at(1.0), true);
        assert!(
            !b.try_withdraw(at(1.0), RetryCause::Error),
            "a retry earns nothing"
        );
        b.on_send(at(1.0), false);
        assert!(b.try_withdraw(at(1.0), RetryCause::Timeout));
        assert!(!b.try_withdraw(at(1.0), RetryCause::Error));
        // The withdrawals of second 0 expire at 10 s: the reserve is back.
        assert!(b.try_withdraw(at(10.0), RetryCause::Error));
        assert!(b.try_withdraw(at(10.0), RetryCause::Error));
        assert!(!b.try_withdraw(at(10.0), RetryCause::Error));
    }

    #[test]
    fn aws_standard_costs_and_refunds() {
        let mut b = Budget::new(&BudgetConfig::AwsStandard(AwsStandardConfig {
            tokens: 20,
            ..AwsStandardConfig::default()
        }));
        assert!(b.try_withdraw(at(0.0), RetryCause::Timeout)); // 10 left
        assert!(b.try_withdraw(at(0.0), RetryCause::Error)); // 5
        assert!(b.try_withdraw(at(0.0), RetryCause::Error)); // 0
        assert!(!b.try_withdraw(at(0.0), RetryCause::Error));
        b.on_outcome(SendOutcome::RetrySuccess {
            cause: RetryCause::Timeout,
        }); // 10
        b.on_outcome(SendOutcome::Failure);
        assert!(b.try_withdraw(at(0.0), RetryCause::Timeout), "refunded 10"); // 0
        assert!(!b.try_withdraw(at(0.0), RetryCause::Error));
        for _ in 0..100 {
            b.on_outcome(SendOutcome::Success);
        }
        assert!(matches!(b, Budget::AwsStandard { tokens: 20, .. }), "{b:?}");
    }

    #[test]
    fn client_bucket_needs_more_than_threshold() {
        let mut b = Budget::new(&BudgetConfig::ClientBucket(ClientBucketConfig::default()));
        for _ in 0..4 {
            assert!(b.try_withdraw(at(0.0), RetryCause::Error));
        }
        // 1 token left: not more than the threshold.
        assert!(!b.try_withdraw(at(0.0), RetryCause::Error));
        b.on_send(at(0.0), true);
        assert!(
            !b.try_withdraw(at(0.0), RetryCause::Error),
            "retries earn nothing"
        );
        b.on_send(at(0.0), false);
        assert!(b.try_withdraw(at(0.0), RetryCause::Error)); // 1.1 → 0.1
        assert!(!b.try_withdraw(at(0.0), RetryCause::Error));
    }

    #[test]
    fn token_bucket_stops_at_half_and_successes_refill() {
        let mut b = Budget::new(&BudgetConfig::TokenBucket(TokenBucketConfig {
            tokens_max: 4.0,
            tokens_per_success: 0.5,
        }));
        b.on_outcome(SendOutcome::Failure); // 3
        assert!(b.try_withdraw(at(0.0), RetryCause::Error));
        b.on_outcome(SendOutcome::Timeout); // 2
        assert!(!b.try_withdraw(at(0.0), RetryCause::Error));
        b.on_outcome(SendOutcome::Success);
        assert!(b.try_withdraw(at(0.0), RetryCause::Error));
    }
}
