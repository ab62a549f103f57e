//! The timeline of a run, as records with their virtual time.
//!
//! Traces are what a person reads to understand a run and what snapshot
//! tests pin: every arrival, answer, attempt, outcome, breaker transition
//! and dead letter, in the order the simulator saw them.

use crate::relay::{CallError, Event, JobId};
use crate::time::Time;
use serde::Serialize;
use std::io::Write;

/// What the simulator itself observed (the relay's own events ride along
/// as [`TraceRecord::Relay`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum SimRecord {
    /// A client sends (or re-sends) logical request `request`.
    Send {
        request: u64,
        client: u64,
        send: u32,
    },
    /// The relay's immediate answer.
    Answer {
        request: u64,
        answer: &'static str,
        job: Option<JobId>,
    },
    Call {
        job: JobId,
        attempt: u32,
    },
    CallDone {
        job: JobId,
        attempt: u32,
        ok: bool,
        /// How a failed call failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<CallError>,
        duplicate: bool,
    },
    Finished {
        job: JobId,
        outcome: &'static str,
        attempts: u32,
        latency_ms: f64,
    },
    ClientTimeout {
        request: u64,
        send: u32,
    },
    ClientRetry {
        request: u64,
        send: u32,
        at: Time,
    },
    /// A retry the client's gate did not allow, and why.
    ClientRetryDenied {
        request: u64,
        send: u32,
        reason: &'static str,
    },
    /// The logical request reached its deadline and was given up.
    ClientDeadline {
        request: u64,
    },
    ClientDone {
        request: u64,
        outcome: &'static str,
        latency_ms: f64,
    },
    DlqOverflow {
        job: JobId,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum TraceRecord {
    Sim(SimRecord),
    Relay(Event),
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraceLine {
    pub t_ns: u64,
    #[serde(flatten)]
    pub record: TraceRecord,
}

/// Records kept by one run, up to a bound; past it the trace says it was cut.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    pub lines: Vec<TraceLine>,
    pub truncated: bool,
    limit: usize,
}

impl Trace {
    pub fn new(limit: usize) -> Trace {
        Trace {
            lines: Vec::new(),
            truncated: false,
            limit,
        }
    }

    /// A trace asked to keep no record: cut before its first.
    pub fn nothing_kept() -> Trace {
        Trace {
            lines: Vec::new(),
            truncated: true,
            limit: 0,
        }
    }

    pub fn push(&mut self, now: Time, record: TraceRecord) {
        if self.lines.len() >= self.limit {
            self.truncated = true;
            return;
        }
        self.lines.push(TraceLine {
            t_ns: now.as_nanos(),
            record,
        });
    }

    /// Writes one JSON object per line.
    pub fn write_jsonl(&self, mut out: impl Write) -> std::io::Result<()> {
        for line in &self.lines {
            serde_json::to_writer(&mut out, line)?;
            out.write_all(b"\n")?;
        }
        if self.truncated {
            writeln!(
                out,
                "{{\"event\":\"trace-truncated\",\"records_max\":{}}}",
                self.limit
            )?;
        }
        out.flush()
    }

    /// The JSON lines as one string.
    pub fn to_jsonl(&self) -> String {
        let mut buf = Vec::new();
        self.write_jsonl(&mut buf)
            .expect("writing to memory cannot fail");
        String::from_utf8(buf).expect("serde_json writes UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_time_and_a_kebab_case_event() {
        let mut t = Trace::new(2);
        t.push(
            Time::from_millis(1),
            TraceRecord::Sim(SimRecord::Call {
                job: JobId(4),
                attempt: 1,
            }),
        );
        let e = Event::Requeued { job: JobId(4) };
        t.push(Time::from_millis(2), TraceRecord::Relay(e));
        t.push(Time::from_millis(3), TraceRecord::Relay(e));
        assert_eq!(
            t.to_jsonl(),
            concat!(
                "{\"t_ns\":1000000,\"event\":\"call\",\"job\":\"0-4\",\"attempt\":1}\n",
                "{\"t_ns\":2000000,\"event\":\"requeued\",\"job\":\"0-4\"}\n",
                "{\"event\":\"trace-truncated\",\"records_max\":2}\n"
            )
        );
    }
}
