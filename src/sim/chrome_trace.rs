//! A run's timeline in the Chrome trace-event format, for a trace viewer.
//!
//! JSON lines are good for `grep` and snapshot tests, poor for seeing a run:
//! which jobs waited, how attempts overlapped, when the breaker stopped the
//! calls. Perfetto (ui.perfetto.dev) and chrome://tracing draw the
//! trace-event format as tracks of slices, so this module turns the records
//! of a [`Trace`] into it. It is a pure conversion: records in, a
//! serialisable [`ChromeTrace`] out; the caller writes it.
//!
//! Three processes, each a view of the same run:
//!
//! - pid 1 "jobs": one track per job (tid = its serial). The job's life,
//!   from acceptance to its `finished` record, is a slice enclosing one
//!   slice per attempt; retries, requeues, shedding, dead letters and
//!   redrives are instants on it. Hedged attempts that overlap another
//!   attempt of the job go on an extra track (tid = serial + lane × 2³²).
//! - pid 2 "workers": every attempt again, each on the lowest lane free
//!   when it starts ([`assign_lanes`]), so calls in flight never overlap on
//!   one lane; breaker transitions are process-wide instants here.
//! - pid 3 "clients": one track per logical request (tid = request), its
//!   life from first send to `client-done` as a slice, sends, answers,
//!   timeouts and client retries as instants.
//!
//! An attempt ends at the first of: the downstream's answer (`call-done`),
//! the relay giving up on it (`attempt-failed`, e.g. its timeout), a hedge
//! abandoning it, or its job finishing. An answer that comes later is kept
//! in the slice's args as `late_answer`. Whatever is still open when the
//! records end (attempts, jobs, requests) ends at the last record's time
//! with `open_at_end: true`.
//!
//! Times are virtual: `ts` and `dur` are microseconds since the start of
//! the run, fractional so no nanosecond is lost. Output order is fixed
//! (metadata, then by start time, longer slices first, then record order),
//! so the same records give the same bytes.

use super::trace::{SimRecord, Trace, TraceRecord};
use crate::relay::{CallError, Event, JobId};
use serde::Serialize;
use serde_json::{json, Value};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::io::Write;

pub const JOBS_PID: u32 = 1;
pub const WORKERS_PID: u32 = 2;
pub const CLIENTS_PID: u32 = 3;

/// The whole file: `{"traceEvents":[...],"displayTimeUnit":"ms","otherData":{...}}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChromeTrace {
    pub trace_events: Vec<TraceEvent>,
    pub display_time_unit: &'static str,
    pub other_data: OtherData,
}

/// What produced the trace, shown by viewers beside it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OtherData {
    pub scenario: String,
    pub seed: u64,
    pub version: &'static str,
    /// Records the conversion read.
    pub records: usize,
    /// The run kept fewer records than it made (`--trace-max`).
    pub trace_truncated: bool,
    pub time: &'static str,
}

/// Names the run a trace comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunInfo {
    pub scenario: String,
    pub seed: u64,
}

/// One entry of `traceEvents`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraceEvent {
    pub name: String,
    pub cat: &'static str,
    pub ph: Phase,
    /// Microseconds of virtual time.
    pub ts: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dur: Option<f64>,
    pub pid: u32,
    pub tid: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s: Option<Scope>,
    #[serde(skip_serializing_if = "Value::is_null")]
    pub args: Value,
}

/// The event types this module writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Phase {
    /// A slice with a start and a duration.
    #[serde(rename = "X")]
    Complete,
    #[serde(rename = "i")]
    Instant,
    /// Names a process or a thread.
    #[serde(rename = "M")]
    Metadata,
}

/// How far an instant reaches in the viewer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Scope {
    #[serde(rename = "t")]
    Thread,
    #[serde(rename = "p")]
    Process,
}

impl ChromeTrace {
    /// Writes the trace as one compact JSON object and a newline.
    pub fn write(&self, mut out: impl Write) -> std::io::Result<()> {
        serde_json::to_writer(&mut out, self)?;
        out.write_all(b"\n")?;
        out.flush()
    }
}

/// Converts the records of one run.
pub fn chrome_trace(trace: &Trace, run: &RunInfo) -> ChromeTrace {
    let mut timeline = Timeline::default();
    for line in &trace.lines {
        assert!(line.t_ns >= timeline.last_ns, "trace time went backwards");
        timeline.last_ns = line.t_ns;
        match &line.record {
            TraceRecord::Sim(r) => timeline.sim(line.t_ns, r),
            TraceRecord::Relay(e) => timeline.relay(line.t_ns, e),
        }
    }
    ChromeTrace {
        trace_events: timeline.into_events(),
        display_time_unit: "ms",
        other_data: OtherData {
            scenario: run.scenario.clone(),
            seed: run.seed,
            version: env!("CARGO_PKG_VERSION"),
            records: trace.lines.len(),
            trace_truncated: trace.truncated,
            time: "virtual time, microseconds since the start of the run",
        },
    }
}

/// For each interval `(start, end)`, given in start order, the lowest lane
/// free at its start: a lane is free again from its last interval's end
/// (intervals are half-open, so one may start when another ends). Two
/// intervals that overlap never share a lane.
pub fn assign_lanes(intervals: &[(u64, u64)]) -> Vec<u32> {
    let mut busy: BinaryHeap<Reverse<(u64, u32)>> = BinaryHeap::new();
    let mut free: BTreeSet<u32> = BTreeSet::new();
    let mut lanes_used = 0u32;
    let mut last_start = 0;
    let mut lanes = Vec::with_capacity(intervals.len());
    for &(start, end) in intervals {
        assert!(start <= end, "an interval ends before it starts");
        assert!(start >= last_start, "intervals must come in start order");
        last_start = start;
        while let Some(&Reverse((until, lane))) = busy.peek() {
            if until > start {
                break;
            }
            busy.pop();
            free.insert(lane);
        }
        let lane = free.pop_first().unwrap_or_else(|| {
            lanes_used += 1;
            lanes_used - 1
        });
        busy.push(Reverse((end, lane)));
        lanes.push(lane);
    }
    lanes
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum AttemptOutcome {
    Succeeded,
    Failed,
    TimedOut,
    /// A hedge won, or the job ended another way.
    Abandoned,
    /// Called again under the same number (after a restart) before an end.
    Replaced,
    Open,
}

#[derive(Clone, Debug)]
struct Attempt {
    job: JobId,
    attempt: u32,
    start_ns: u64,
    end_ns: u64,
    outcome: AttemptOutcome,
    error: Option<CallError>,
    duplicate: Option<bool>,
    /// The downstream's answer, when it came after the attempt ended.
    late_answer: Option<&'static str>,
}

impl Attempt {
    fn args(&self) -> Value {
        let mut args = json!({
            "job": self.job,
            "outcome": self.outcome,
        });
        let map = args.as_object_mut().expect("an object");
        if let Some(e) = self.error {
            map.insert("error".into(), json!(e));
        }
        if let Some(d) = self.duplicate {
            map.insert("duplicate".into(), json!(d));
        }
        if let Some(a) = self.late_answer {
            map.insert("late_answer".into(), json!(a));
        }
        if self.outcome == AttemptOutcome::Open {
            map.insert("open_at_end".into(), json!(true));
        }
        args
    }
}

/// A life with a start and, once seen, an end: a job or a request.
#[derive(Clone, Debug)]
struct Life {
    start_ns: u64,
    start_args: Value,
    end: Option<(u64, Value)>,
}

impl Life {
    fn begins(start_ns: u64, start_args: Value) -> Life {
        Life {
            start_ns,
            start_args,
            end: None,
        }
    }

    /// The slice's end and its args (start args first, end args over them).
    fn close(&self, last_ns: u64) -> (u64, Value) {
        let mut args = self.start_args.clone();
        let map = args.as_object_mut().expect("an object");
        match &self.end {
            Some((end_ns, end_args)) => {
                if let Some(extra) = end_args.as_object() {
                    map.extend(extra.clone());
                }
                (*end_ns, args)
            }
            None => {
                map.insert("open_at_end".into(), json!(true));
                (last_ns, args)
            }
        }
    }
}

#[derive(Clone, Debug)]
struct Instant {
    ts_ns: u64,
    pid: u32,
    tid: u64,
    scope: Scope,
    name: &'static str,
    args: Value,
}

/// The conversion's state while it reads records in order.
#[derive(Default)]
struct Timeline {
    last_ns: u64,
    jobs: BTreeMap<JobId, Life>,
    requests: BTreeMap<u64, Life>,
    open: BTreeMap<(JobId, u32), Attempt>,
    /// Ended attempts, in the order their calls started.
    ended: Vec<Attempt>,
    /// Where an ended attempt is in `ended`, for a late answer.
    ended_at: BTreeMap<(JobId, u32), usize>,
    /// Call order, so ended attempts can be sorted back into it.
    call_seq: BTreeMap<(JobId, u32), u64>,
    calls: u64,
    instants: Vec<Instant>,
}

impl Timeline {
    fn sim(&mut self, t: u64, r: &SimRecord) {
        match *r {
            SimRecord::Send {
                request,
                client,
                send,
            } => {
                let args = json!({ "request": request, "client": client });
                self.requests
                    .entry(request)
                    .or_insert_with(|| Life::begins(t, args));
                self.on_request(t, request, "send", json!({ "send": send }));
            }
            SimRecord::Answer {
                request,
                answer,
                job,
            } => {
                let args = json!({ "answer": answer, "job": job });
                self.on_request(t, request, "answer", args);
                if let (Some(job), "accepted") = (job, answer) {
                    self.job_seen(t, job, json!({ "job": job, "request": request }));
                }
            }
            SimRecord::Call { job, attempt } => self.call(t, job, attempt),
            SimRecord::CallDone {
                job,
                attempt,
                ok,
                error,
                duplicate,
            } => self.call_done(t, (job, attempt), ok, error, duplicate),
            SimRecord::Finished {
                job,
                outcome,
                attempts,
                latency_ms,
            } => self.finished(t, job, outcome, attempts, latency_ms),
            SimRecord::ClientTimeout { request, send } => {
                self.on_request(t, request, "client-timeout", json!({ "send": send }));
            }
            SimRecord::ClientRetry { request, send, at } => {
                let args = json!({ "send": send, "at_ms": at.as_millis_f64() });
                self.on_request(t, request, "client-retry", args);
            }
            SimRecord::ClientRetryDenied {
                request,
                send,
                reason,
            } => {
                let args = json!({ "send": send, "reason": reason });
                self.on_request(t, request, "client-retry-denied", args);
            }
            SimRecord::ClientDeadline { request } => {
                self.on_request(t, request, "client-deadline", Value::Null);
            }
            SimRecord::ClientDone {
                request,
                outcome,
                latency_ms,
            } => {
                let args = json!({ "outcome": outcome, "latency_ms": latency_ms });
                if let Some(life) = self.requests.get_mut(&request) {
                    life.end.get_or_insert((t, args));
                }
            }
            SimRecord::DlqOverflow { job } => self.on_job(t, job, "dlq-overflow", Value::Null),
        }
    }

    fn relay(&mut self, t: u64, e: &Event) {
        match *e {
            Event::AttemptFailed {
                job,
                attempt,
                error,
            } => {
                let outcome = match error {
                    CallError::Timeout => AttemptOutcome::TimedOut,
                    _ => AttemptOutcome::Failed,
                };
                if let Some(mut a) = self.open.remove(&(job, attempt)) {
                    a.error = Some(error);
                    self.end_attempt(t, a, outcome);
                }
            }
            Event::RetryScheduled { job, retry, at } => {
                let args = json!({ "retry": retry, "at_ms": at.as_millis_f64() });
                self.on_job(t, job, "retry-scheduled", args);
            }
            Event::Requeued { job } => self.on_job(t, job, "requeued", Value::Null),
            Event::LateResult { job, attempt } => {
                self.on_job(t, job, "late-result", json!({ "attempt": attempt }));
            }
            Event::LateSuccess { job, attempt, fate } => {
                let args = json!({ "attempt": attempt, "fate": fate });
                self.on_job(t, job, "late-success", args);
            }
            Event::Breaker { route, from, to } => self.instants.push(Instant {
                ts_ns: t,
                pid: WORKERS_PID,
                tid: 0,
                scope: Scope::Process,
                name: "breaker",
                args: json!({ "route": route.0, "from": from, "to": to }),
            }),
            Event::Redriven { letter, job } => {
                self.on_job(t, letter, "redriven", json!({ "as": job }));
                self.job_seen(t, job, json!({ "job": job, "redriven_from": letter }));
            }
            Event::Shed { job, to } => self.on_job(t, job, "shed", json!({ "to": to })),
            Event::HedgeSent { job, attempt } => {
                self.on_job(t, job, "hedge-sent", json!({ "attempt": attempt }));
            }
            Event::HedgeAbandoned { job, attempt } => {
                if let Some(a) = self.open.remove(&(job, attempt)) {
                    self.end_attempt(t, a, AttemptOutcome::Abandoned);
                }
            }
        }
    }

    /// A job's life starts at the first record naming it.
    fn job_seen(&mut self, t: u64, job: JobId, args: Value) {
        self.jobs
            .entry(job)
            .or_insert_with(|| Life::begins(t, args));
    }

    fn on_job(&mut self, t: u64, job: JobId, name: &'static str, args: Value) {
        self.job_seen(t, job, json!({ "job": job }));
        self.instants.push(Instant {
            ts_ns: t,
            pid: JOBS_PID,
            tid: u64::from(job.serial()),
            scope: Scope::Thread,
            name,
            args,
        });
    }

    fn on_request(&mut self, t: u64, request: u64, name: &'static str, args: Value) {
        self.instants.push(Instant {
            ts_ns: t,
            pid: CLIENTS_PID,
            tid: request,
            scope: Scope::Thread,
            name,
            args,
        });
    }

    fn call(&mut self, t: u64, job: JobId, attempt: u32) {
        self.job_seen(t, job, json!({ "job": job }));
        if let Some(old) = self.open.remove(&(job, attempt)) {
            self.end_attempt(t, old, AttemptOutcome::Replaced);
        }
        self.call_seq.insert((job, attempt), self.calls);
        self.calls += 1;
        let a = Attempt {
            job,
            attempt,
            start_ns: t,
            end_ns: t,
            outcome: AttemptOutcome::Open,
            error: None,
            duplicate: None,
            late_answer: None,
        };
        self.open.insert((job, attempt), a);
    }

    fn call_done(
        &mut self,
        t: u64,
        call: (JobId, u32),
        ok: bool,
        error: Option<CallError>,
        duplicate: bool,
    ) {
        if let Some(mut a) = self.open.remove(&call) {
            a.error = error;
            a.duplicate = Some(duplicate);
            let outcome = match ok {
                true => AttemptOutcome::Succeeded,
                false => AttemptOutcome::Failed,
            };
            self.end_attempt(t, a, outcome);
        } else if let Some(&i) = self.ended_at.get(&call) {
            let a = &mut self.ended[i];
            a.duplicate = Some(duplicate);
            a.late_answer = Some(error.map_or("succeeded", CallError::name));
        }
    }

    fn finished(&mut self, t: u64, job: JobId, outcome: &'static str, attempts: u32, ms: f64) {
        let still_open: Vec<(JobId, u32)> = self
            .open
            .range((job, 0)..=(job, u32::MAX))
            .map(|(k, _)| *k)
            .collect();
        for k in still_open {
            let a = self.open.remove(&k).expect("just listed");
            self.end_attempt(t, a, AttemptOutcome::Abandoned);
        }
        if outcome == "dead-lettered" {
            self.on_job(t, job, "dead-lettered", json!({ "attempts": attempts }));
        }
        self.job_seen(t, job, json!({ "job": job }));
        let args = json!({ "outcome": outcome, "attempts": attempts, "latency_ms": ms });
        if let Some(life) = self.jobs.get_mut(&job) {
            life.end.get_or_insert((t, args));
        }
    }

    fn end_attempt(&mut self, t: u64, mut a: Attempt, outcome: AttemptOutcome) {
        a.end_ns = t;
        a.outcome = outcome;
        self.ended_at.insert((a.job, a.attempt), self.ended.len());
        self.ended.push(a);
    }

    fn into_events(mut self) -> Vec<TraceEvent> {
        let last_ns = self.last_ns;
        for (_, a) in std::mem::take(&mut self.open) {
            self.end_attempt(last_ns, a, AttemptOutcome::Open);
        }
        let mut attempts = std::mem::take(&mut self.ended);
        let seq = &self.call_seq;
        attempts.sort_by_key(|a| (a.start_ns, seq[&(a.job, a.attempt)]));
        let mut out = Output::default();
        self.job_slices(&mut out);
        attempt_slices(&attempts, &mut out);
        self.request_slices(&mut out);
        for i in self.instants {
            let ev = out.event(i.name.to_string(), Phase::Instant, i.ts_ns, None, i.pid);
            let ev = TraceEvent {
                s: Some(i.scope),
                args: i.args,
                tid: i.tid,
                ..ev
            };
            out.timed.push((i.ts_ns, 0, ev));
        }
        out.finish()
    }

    fn job_slices(&self, out: &mut Output) {
        for (job, life) in &self.jobs {
            let tid = u64::from(job.serial());
            out.name_thread(JOBS_PID, tid, format!("job {}", job.serial()));
            let (end_ns, args) = life.close(self.last_ns);
            let name = format!("job {job}");
            out.slice(name, JOBS_PID, tid, (life.start_ns, end_ns), args);
        }
    }

    fn request_slices(&self, out: &mut Output) {
        for (request, life) in &self.requests {
            out.name_thread(CLIENTS_PID, *request, format!("request {request}"));
            let (end_ns, args) = life.close(self.last_ns);
            let name = format!("request {request}");
            out.slice(name, CLIENTS_PID, *request, (life.start_ns, end_ns), args);
        }
    }
}

/// Every attempt twice: on its job's track and on a worker lane.
fn attempt_slices(attempts: &[Attempt], out: &mut Output) {
    let spans: Vec<(u64, u64)> = attempts.iter().map(|a| (a.start_ns, a.end_ns)).collect();
    let lanes = assign_lanes(&spans);
    // Within a job, attempts only overlap when hedged.
    let mut by_job: BTreeMap<JobId, Vec<usize>> = BTreeMap::new();
    for (i, a) in attempts.iter().enumerate() {
        by_job.entry(a.job).or_default().push(i);
    }
    let mut job_lane = vec![0u32; attempts.len()];
    for indices in by_job.values() {
        let spans: Vec<(u64, u64)> = indices.iter().map(|&i| spans[i]).collect();
        for (&i, lane) in indices.iter().zip(assign_lanes(&spans)) {
            job_lane[i] = lane;
        }
    }
    for (i, a) in attempts.iter().enumerate() {
        let name = format!("attempt {}", a.attempt);
        let serial = u64::from(a.job.serial());
        let tid = serial + (u64::from(job_lane[i]) << 32);
        if job_lane[i] > 0 {
            let lane = job_lane[i];
            out.name_thread(JOBS_PID, tid, format!("job {serial} hedge lane {lane}"));
        }
        let span = (a.start_ns, a.end_ns);
        out.slice(name.clone(), JOBS_PID, tid, span, a.args());
        let lane = u64::from(lanes[i]);
        out.name_thread(WORKERS_PID, lane, format!("lane {lane}"));
        out.slice(name, WORKERS_PID, lane, span, a.args());
    }
}

/// Events gathered before they are put in their fixed order.
#[derive(Default)]
struct Output {
    threads: BTreeMap<(u32, u64), String>,
    /// (start, longer first, event); the sort is stable, so ties keep the
    /// order they were added in.
    timed: Vec<(u64, u64, TraceEvent)>,
}

impl Output {
    fn event(
        &self,
        name: String,
        ph: Phase,
        ts_ns: u64,
        dur_ns: Option<u64>,
        pid: u32,
    ) -> TraceEvent {
        TraceEvent {
            name,
            cat: "sim",
            ph,
            ts: micros(ts_ns),
            dur: dur_ns.map(micros),
            pid,
            tid: 0,
            s: None,
            args: Value::Null,
        }
    }

    fn name_thread(&mut self, pid: u32, tid: u64, name: String) {
        self.threads.entry((pid, tid)).or_insert(name);
    }

    fn slice(&mut self, name: String, pid: u32, tid: u64, (start, end): (u64, u64), args: Value) {
        let dur = end - start;
        let ev = self.event(name, Phase::Complete, start, Some(dur), pid);
        let ev = TraceEvent { tid, args, ..ev };
        self.timed.push((start, dur, ev));
    }

    fn finish(mut self) -> Vec<TraceEvent> {
        let mut events = Vec::with_capacity(self.threads.len() + self.timed.len() + 3);
        for (pid, name) in [
            (JOBS_PID, "jobs"),
            (WORKERS_PID, "workers"),
            (CLIENTS_PID, "clients"),
        ] {
            events.push(self.metadata("process_name", pid, 0, name.to_string()));
        }
        let threads = std::mem::take(&mut self.threads);
        for ((pid, tid), name) in threads {
            events.push(self.metadata("thread_name", pid, tid, name));
        }
        self.timed
            .sort_by_key(|&(start, dur, _)| (start, Reverse(dur)));
        events.extend(self.timed.into_iter().map(|(_, _, ev)| ev));
        events
    }

    fn metadata(&self, what: &str, pid: u32, tid: u64, name: String) -> TraceEvent {
        let ev = self.event(what.to_string(), Phase::Metadata, 0, None, pid);
        TraceEvent {
            tid,
            args: json!({ "name": name }),
            ..ev
        }
    }
}

/// Virtual nanoseconds as the format's microseconds.
fn micros(ns: u64) -> f64 {
    ns as f64 / 1_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Time;

    #[test]
    fn lanes_start_at_zero_and_reuse_the_lowest_free() {
        // 0: [0,10) 1: [2,5) 2: [5,8) reuses lane 1 as 1 ends at 5;
        // 3: [10,12) takes lane 0 back, the lowest free.
        let lanes = assign_lanes(&[(0, 10), (2, 5), (5, 8), (6, 7), (10, 12)]);
        assert_eq!(lanes, vec![0, 1, 1, 2, 0]);
    }

    #[test]
    fn overlapping_intervals_never_share_a_lane() {
        let mut spans: Vec<(u64, u64)> = (0..200u64)
            .map(|i| {
                let start = (i * 7919) % 1000;
                (start, start + 1 + (i * 104_729) % 50)
            })
            .collect();
        spans.sort();
        let lanes = assign_lanes(&spans);
        for (i, a) in spans.iter().enumerate() {
            for (j, b) in spans.iter().enumerate().skip(i + 1) {
                let overlap = a.0 < b.1 && b.0 < a.1;
                assert!(
                    !(overlap && lanes[i] == lanes[j]),
                    "{a:?} and {b:?} share lane {}",
                    lanes[i]
                );
            }
        }
        // Never more lanes than the most intervals open at once.
        let most_open = spans
            .iter()
            .map(|&(t, _)| spans.iter().filter(|s| s.0 <= t && t < s.1).count())
            .max()
            .unwrap();
        let lanes_used = lanes.iter().max().unwrap() + 1;
        assert!(lanes_used as usize <= most_open.max(1));
    }

    #[test]
    fn touching_intervals_share_a_lane_and_ties_keep_input_order() {
        assert_eq!(assign_lanes(&[(0, 5), (5, 9), (5, 6)]), vec![0, 0, 1]);
        assert_eq!(assign_lanes(&[(3, 3), (3, 3), (3, 4)]), vec![0, 0, 0]);
        assert!(assign_lanes(&[]).is_empty());
    }

    #[test]
    #[should_panic(expected = "start order")]
    fn lanes_refuse_intervals_out_of_order() {
        assign_lanes(&[(5, 6), (1, 2)]);
    }

    fn trace(records: Vec<(u64, TraceRecord)>) -> Trace {
        let mut t = Trace::new(1_000);
        for (ms, r) in records {
            t.push(Time::from_millis(ms), r);
        }
        t
    }

    fn sim(r: SimRecord) -> TraceRecord {
        TraceRecord::Sim(r)
    }

    #[test]
    fn a_timed_out_attempt_ends_at_its_timeout_and_keeps_its_late_answer() {
        let job = JobId::new(3, 0);
        let t = trace(vec![
            (0, sim(SimRecord::Call { job, attempt: 1 })),
            (
                100,
                TraceRecord::Relay(Event::AttemptFailed {
                    job,
                    attempt: 1,
                    error: CallError::Timeout,
                }),
            ),
            (
                150,
                sim(SimRecord::CallDone {
                    job,
                    attempt: 1,
                    ok: true,
                    error: None,
                    duplicate: false,
                }),
            ),
            (200, sim(SimRecord::Call { job, attempt: 2 })),
        ]);
        let run = RunInfo {
            scenario: "unit".into(),
            seed: 1,
        };
        let out = chrome_trace(&t, &run);
        let slices: Vec<&TraceEvent> = out
            .trace_events
            .iter()
            .filter(|e| e.pid == JOBS_PID && e.name.starts_with("attempt"))
            .collect();
        assert_eq!(slices.len(), 2);
        assert_eq!((slices[0].ts, slices[0].dur), (0.0, Some(100_000.0)));
        assert_eq!(slices[0].args["outcome"], "timed-out");
        assert_eq!(slices[0].args["late_answer"], "succeeded");
        // Still in flight when the records end: it ends with them.
        assert_eq!((slices[1].ts, slices[1].dur), (200_000.0, Some(0.0)));
        assert_eq!(slices[1].args["open_at_end"], true);
        let job_slice = out
            .trace_events
            .iter()
            .find(|e| e.name == "job 3-0")
            .unwrap();
        assert_eq!(job_slice.dur, Some(200_000.0));
        assert_eq!(job_slice.args["open_at_end"], true);
    }
}
