//! Finding where the share of seeds that recover crosses one half, by
//! bisection along one axis.
//!
//! A full grid of 20 × 20 points at 20 seeds is 8,000 runs and spends
//! nearly all of them far from the boundary, where every seed recovers or
//! none does. Bisection evaluates each line's two ends, then only the
//! middle of the bracket that holds the crossing: about
//! `2 + log2((hi - lo) / tolerance)` points a line. Every line advances one
//! step per round, and a round is one flat list of (point, seed) runs, so
//! the runs of a round are independent and can go to any thread (or, later,
//! any machine) in any order.
//!
//! Bisection assumes one crossing along the line; the points it evaluated
//! are all reported, so a second crossing shows as a point on the wrong
//! side.

/// Most rounds after the two ends: halving 40 times takes any range below
/// a millionth of a millionth of itself.
pub const ROUNDS_MAX: u32 = 40;

/// How the runs of one point came out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    pub recovered: u32,
    pub stuck: u32,
    /// Runs whose liveness could not be judged, by reason.
    pub unchecked: Vec<(&'static str, u32)>,
    /// Runs that broke an invariant: (seed, what broke).
    pub violations: Vec<(u64, String)>,
}

impl Tally {
    /// Runs whose liveness was judged.
    pub fn judged(&self) -> u32 {
        self.recovered + self.stuck
    }

    pub fn unchecked_total(&self) -> u32 {
        self.unchecked.iter().map(|(_, n)| n).sum()
    }

    /// Share of the judged runs that recovered; NaN if none was judged.
    pub fn share(&self) -> f64 {
        match self.judged() {
            0 => f64::NAN,
            n => f64::from(self.recovered) / f64::from(n),
        }
    }

    /// Whether at least half the judged runs recovered; `None` if none was
    /// judged.
    pub fn recovers(&self) -> Option<bool> {
        let share = self.share();
        (!share.is_nan()).then_some(share >= 0.5)
    }

    pub fn count_unchecked(&mut self, reason: &'static str) {
        match self.unchecked.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.unchecked.push((reason, 1)),
        }
    }
}

/// Where a line's boundary lies.
#[derive(Clone, Debug, PartialEq)]
pub enum Boundary {
    /// The share crosses one half between `low` and `high` (closer than
    /// the tolerance, or adjacent whole numbers); `recovers_below` says on
    /// which side at least half recover.
    Between {
        low: f64,
        high: f64,
        recovers_below: bool,
    },
    /// At least half recover at both ends (and, assuming one crossing,
    /// everywhere between).
    RecoversThroughout,
    /// Fewer than half recover at both ends.
    DownThroughout,
    /// A point on the way had no judged run (every run unchecked), at
    /// this value.
    Unjudged { at: f64 },
}

impl Boundary {
    /// The boundary's estimate: the middle of its bracket.
    pub fn estimate(&self) -> Option<f64> {
        match self {
            Boundary::Between { low, high, .. } => Some((low + high) / 2.0),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Boundary::Between { .. } => "crossing",
            Boundary::RecoversThroughout => "recovers throughout",
            Boundary::DownThroughout => "stays down throughout",
            Boundary::Unjudged { .. } => "unjudged",
        }
    }
}

/// One line of the search: the bisected axis's range, the points
/// evaluated on it (in increasing value), and where it stands.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub lo: f64,
    pub hi: f64,
    pub points: Vec<(f64, Tally)>,
    /// The current bracket while the search goes on; the answer once done.
    state: State,
}

#[derive(Clone, Debug, PartialEq)]
enum State {
    Start,
    Open { low: f64, high: f64, below: bool },
    Done(Boundary),
}

impl Line {
    pub fn new(lo: f64, hi: f64) -> Line {
        Line {
            lo,
            hi,
            points: Vec::new(),
            state: State::Start,
        }
    }

    /// The answer, once the search is done.
    pub fn boundary(&self) -> Option<&Boundary> {
        match &self.state {
            State::Done(b) => Some(b),
            _ => None,
        }
    }

    fn tally_at(&self, value: f64) -> Option<&Tally> {
        self.points
            .iter()
            .find(|(v, _)| *v == value)
            .map(|(_, t)| t)
    }

    fn record(&mut self, value: f64, tally: Tally) {
        let at = self.points.partition_point(|(v, _)| *v < value);
        self.points.insert(at, (value, tally));
    }
}

/// The search's step and stop rule along the bisected axis.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    /// Stop once the bracket is at most this wide.
    pub tolerance: f64,
    /// Values are whole numbers: the middle rounds down, and a bracket of
    /// adjacent numbers is done.
    pub integral: bool,
}

impl Step {
    fn middle(&self, low: f64, high: f64) -> Option<f64> {
        let mid = if self.integral {
            ((low + high) / 2.0).floor()
        } else {
            (low + high) / 2.0
        };
        let narrow = high - low <= self.tolerance || mid <= low || mid >= high;
        (!narrow).then_some(mid)
    }
}

/// The values each unfinished line asks for next: both ends first, then
/// the middle of its bracket. Entry `i` is `(line index, value)`.
pub fn asks(lines: &[Line], step: Step) -> Vec<(usize, f64)> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        match line.state {
            State::Start => {
                out.push((i, line.lo));
                out.push((i, line.hi));
            }
            State::Open { low, high, .. } => {
                if let Some(mid) = step.middle(low, high) {
                    out.push((i, mid));
                }
            }
            State::Done(_) => {}
        }
    }
    out
}

/// Takes the answers to [`asks`] (same order) and moves every line on.
pub fn advance(lines: &mut [Line], step: Step, answers: Vec<((usize, f64), Tally)>) {
    for ((i, value), tally) in answers {
        lines[i].record(value, tally);
    }
    for line in lines.iter_mut() {
        line.state = next(line, step);
    }
}

fn next(line: &Line, step: Step) -> State {
    let side = |v: f64| line.tally_at(v).map(Tally::recovers);
    match line.state {
        State::Start => match (side(line.lo), side(line.hi)) {
            (Some(None), _) => State::Done(Boundary::Unjudged { at: line.lo }),
            (_, Some(None)) => State::Done(Boundary::Unjudged { at: line.hi }),
            (Some(Some(true)), Some(Some(true))) => State::Done(Boundary::RecoversThroughout),
            (Some(Some(false)), Some(Some(false))) => State::Done(Boundary::DownThroughout),
            (Some(Some(below)), Some(Some(_))) => open(line.lo, line.hi, below, step),
            _ => line.state.clone(),
        },
        State::Open { low, high, below } => {
            let Some(mid) = step.middle(low, high) else {
                return line.state.clone();
            };
            match side(mid) {
                Some(None) => State::Done(Boundary::Unjudged { at: mid }),
                Some(Some(s)) if s == below => open(mid, high, below, step),
                Some(Some(_)) => open(low, mid, below, step),
                None => line.state.clone(),
            }
        }
        State::Done(_) => line.state.clone(),
    }
}

/// A bracket, or the answer if it is already narrow enough.
fn open(low: f64, high: f64, below: bool, step: Step) -> State {
    match step.middle(low, high) {
        Some(_) => State::Open { low, high, below },
        None => State::Done(Boundary::Between {
            low,
            high,
            recovers_below: below,
        }),
    }
}

/// Runs the whole search: `evaluate` answers one round's asks (one tally
/// each, in order), or stops the search with an error. Returns the rounds
/// taken, the two ends included.
pub fn search<E>(
    lines: &mut [Line],
    step: Step,
    mut evaluate: impl FnMut(u32, &[(usize, f64)]) -> Result<Vec<Tally>, E>,
) -> Result<u32, E> {
    let mut rounds = 0;
    while rounds <= ROUNDS_MAX {
        let asked = asks(lines, step);
        if asked.is_empty() {
            break;
        }
        let answers = evaluate(rounds, &asked)?;
        assert_eq!(answers.len(), asked.len(), "one tally per point asked");
        advance(lines, step, asked.into_iter().zip(answers).collect());
        rounds += 1;
    }
    Ok(rounds)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` seeds at `x`: seed k recovers when x < edge + (k - n/2) * spread,
    /// a monotone share that crosses one half at `edge`.
    fn synthetic(edge: f64, spread: f64, n: u32) -> impl Fn(f64) -> Tally {
        move |x| {
            let mut t = Tally::default();
            for k in 0..n {
                let own = edge + (f64::from(k) - f64::from(n) / 2.0) * spread;
                if x < own {
                    t.recovered += 1;
                } else {
                    t.stuck += 1;
                }
            }
            t
        }
    }

    fn run(lines: &mut [Line], step: Step, f: &dyn Fn(usize, f64) -> Tally) -> (u32, usize) {
        let mut points = 0;
        let rounds = search(lines, step, |_, asked| {
            points += asked.len();
            Ok::<_, ()>(asked.iter().map(|&(i, v)| f(i, v)).collect())
        });
        (rounds.expect("no error"), points)
    }

    #[test]
    fn bisection_finds_a_known_boundary_to_the_tolerance() {
        let step = Step {
            tolerance: 0.5,
            integral: false,
        };
        let edges = [37.3, 81.9, 12.0];
        let mut lines = vec![Line::new(0.0, 100.0); 3];
        let (rounds, points) = run(&mut lines, step, &|i, x| synthetic(edges[i], 2.0, 20)(x));
        for (line, edge) in lines.iter().zip(edges) {
            let Some(Boundary::Between {
                low,
                high,
                recovers_below,
            }) = line.boundary()
            else {
                panic!("a crossing: {:?}", line.boundary())
            };
            assert!(*recovers_below);
            assert!(low <= &edge && &edge <= high, "{edge} in [{low}, {high}]");
            assert!(high - low <= 0.5);
        }
        // 100 / 2^8 < 0.5: the two ends, then 8 middles.
        assert_eq!((rounds, points), (9, 3 * 10));
    }

    #[test]
    fn a_rising_share_is_found_too_and_whole_numbers_stop_at_neighbours() {
        let step = Step {
            tolerance: 0.0,
            integral: true,
        };
        let mut lines = vec![Line::new(1.0, 64.0)];
        let rising = |_: usize, x: f64| {
            let mut t = synthetic(20.5, 0.0, 4)(x);
            std::mem::swap(&mut t.recovered, &mut t.stuck);
            t
        };
        run(&mut lines, step, &rising);
        assert_eq!(
            lines[0].boundary(),
            Some(&Boundary::Between {
                low: 20.0,
                high: 21.0,
                recovers_below: false
            })
        );
        assert!(lines[0].points.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn lines_without_a_crossing_or_a_judgement_stop_at_once() {
        let step = Step {
            tolerance: 1.0,
            integral: false,
        };
        let mut lines = vec![Line::new(0.0, 10.0); 3];
        let f = |i: usize, _: f64| match i {
            0 => synthetic(100.0, 0.0, 5)(0.0),
            1 => synthetic(-100.0, 0.0, 5)(0.0),
            _ => Tally {
                unchecked: vec![("no trigger", 5)],
                ..Tally::default()
            },
        };
        let (rounds, points) = run(&mut lines, step, &f);
        let got: Vec<_> = lines.iter().map(|l| l.boundary().cloned()).collect();
        assert_eq!(
            got,
            vec![
                Some(Boundary::RecoversThroughout),
                Some(Boundary::DownThroughout),
                Some(Boundary::Unjudged { at: 0.0 })
            ]
        );
        assert_eq!((rounds, points), (1, 6));
    }
}
