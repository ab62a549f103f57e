//! What a valid JSON body is here: RFC 8259 JSON that is also I-JSON
//! (RFC 7493), checked in one pass without building a value.
//!
//! The relay forwards payloads it does not interpret, so "valid" has to
//! mean the same to every parser downstream, or two of them read one
//! payload two ways. A syntax-only check (serde's `IgnoredAny`) lets
//! through what parsers disagree on: a lone surrogate (`"\ud800"`, which no
//! UTF-8 text can hold), a number no double holds (`1e999999` is infinite
//! to one parser, an error to another), a name given twice (first wins in
//! one, last in another). So a body is valid when it is:
//!
//! - UTF-8 (overlong forms and encoded surrogates are not UTF-8), with no
//!   byte-order mark;
//! - RFC 8259 JSON: one value, any kind, with only space, tab, CR and LF
//!   around tokens;
//! - I-JSON: no surrogate or noncharacter code point, raw or escaped
//!   (`\ud83d\ude00` is a pair, one code point, and fine); every number
//!   finite as an IEEE 754 double (underflow to 0 is fine); no member name
//!   twice in one object, compared after unescaping;
//! - nested at most [`DEPTH_MAX`] arrays and objects deep.
//!
//! The hot loop skips plain string bytes through a table; numbers are
//! converted only when their exponent or length could overflow a double.

use std::borrow::Cow;
use std::fmt;

/// Arrays and objects nested deeper than this are refused (serde_json's
/// own recursion limit, so nothing it reads is refused for depth alone).
pub const DEPTH_MAX: usize = 128;

/// Members of one object compared pairwise; larger objects are sorted.
const PAIRWISE_MAX: usize = 8;

/// Why a body is not valid JSON, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// Byte offset of the problem.
    pub at: usize,
    pub why: &'static str,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.why, self.at)
    }
}

impl std::error::Error for Invalid {}

/// Checks that `body` is one valid JSON value (see the module's rules).
pub fn validate(body: &[u8]) -> Result<(), Invalid> {
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(e) => return Err(invalid(e.valid_up_to(), "not UTF-8")),
    };
    let mut p = Parser {
        text,
        bytes: body,
        pos: 0,
        keys: Vec::with_capacity(16),
    };
    p.document()
}

fn invalid(at: usize, why: &'static str) -> Invalid {
    Invalid { at, why }
}

/// Where the parser is inside a container.
#[derive(Clone, Copy, Debug)]
enum Frame {
    /// In an array.
    Array,
    /// In an object whose member names start at `keys[start]`.
    Object { start: usize },
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// Member names of every open object, innermost last.
    keys: Vec<Cow<'a, str>>,
}

/// Bytes a string scan stops at: `"`, `\`, controls and non-ASCII.
static STRING_STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i < 0x20 || i == b'"' as usize || i == b'\\' as usize || i >= 0x80;
        i += 1;
    }
    t
};

impl<'a> Parser<'a> {
    fn document(&mut self) -> Result<(), Invalid> {
        if self.text.starts_with('\u{feff}') {
            return Err(invalid(0, "a byte-order mark"));
        }
        self.skip_ws();
        self.value()?;
        self.skip_ws();
        if self.pos != self.bytes.len() {
            return Err(invalid(self.pos, "trailing characters after the value"));
        }
        Ok(())
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// One value, containers included, iteratively (an explicit stack,
    /// bounded by [`DEPTH_MAX`]).
    fn value(&mut self) -> Result<(), Invalid> {
        let mut stack: Vec<Frame> = Vec::with_capacity(8);
        loop {
            // At the start of a value.
            match self.peek() {
                Some(b'{') | Some(b'[') if stack.len() == DEPTH_MAX => {
                    return Err(invalid(self.pos, "nested too deep"));
                }
                Some(b'{') => {
                    self.pos += 1;
                    self.skip_ws();
                    stack.push(Frame::Object {
                        start: self.keys.len(),
                    });
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                    } else {
                        self.member_name()?;
                        continue;
                    }
                    stack.pop();
                }
                Some(b'[') => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                    } else {
                        stack.push(Frame::Array);
                        continue;
                    }
                }
                _ => self.scalar()?,
            }
            // After a value: close containers until one wants more.
            loop {
                self.skip_ws();
                let Some(&frame) = stack.last() else {
                    return Ok(());
                };
                match (frame, self.peek()) {
                    (_, Some(b',')) => {
                        self.pos += 1;
                        self.skip_ws();
                        if let Frame::Object { .. } = frame {
                            self.member_name()?;
                        }
                        break;
                    }
                    (Frame::Array, Some(b']')) => {
                        self.pos += 1;
                        stack.pop();
                    }
                    (Frame::Object { start }, Some(b'}')) => {
                        self.close_object(start)?;
                        self.pos += 1;
                        stack.pop();
                    }
                    (Frame::Array, _) => return Err(invalid(self.pos, "expected `,` or `]`")),
                    (Frame::Object { .. }, _) => {
                        return Err(invalid(self.pos, "expected `,` or `}`"))
                    }
                }
            }
        }
    }

    /// `"name"` and `:`, leaving the position at the member's value.
    fn member_name(&mut self) -> Result<(), Invalid> {
        if self.peek() != Some(b'"') {
            return Err(invalid(self.pos, "expected a member name"));
        }
        let name = self.string()?;
        self.keys.push(name);
        self.skip_ws();
        if self.peek() != Some(b':') {
            return Err(invalid(self.pos, "expected `:`"));
        }
        self.pos += 1;
        self.skip_ws();
        Ok(())
    }

    /// Refuses a name given twice among `keys[start..]`, then forgets them.
    fn close_object(&mut self, start: usize) -> Result<(), Invalid> {
        let names = &mut self.keys[start..];
        let twice = if names.len() <= PAIRWISE_MAX {
            (1..names.len()).any(|i| names[..i].contains(&names[i]))
        } else {
            names.sort_unstable();
            names.windows(2).any(|w| w[0] == w[1])
        };
        self.keys.truncate(start);
        if twice {
            return Err(invalid(self.pos, "a member name given twice in one object"));
        }
        Ok(())
    }

    fn scalar(&mut self) -> Result<(), Invalid> {
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            Some(_) => Err(invalid(self.pos, "expected a value")),
            None => Err(invalid(self.pos, "unexpected end of input")),
        }
    }

    fn literal(&mut self, word: &'static str) -> Result<(), Invalid> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(invalid(self.pos, "expected a value"))
        }
    }

    /// A string from its opening quote; its text (borrowed unless escaped).
    fn string(&mut self) -> Result<Cow<'a, str>, Invalid> {
        self.pos += 1;
        let start = self.pos;
        let mut owned: Option<String> = None;
        let mut run = start;
        loop {
            let rest = &self.bytes[self.pos..];
            self.pos += rest
                .iter()
                .position(|&b| STRING_STOP[usize::from(b)])
                .unwrap_or(rest.len());
            match self.peek() {
                None => return Err(invalid(self.pos, "unterminated string")),
                Some(b'"') => {
                    let text = &self.text[run..self.pos];
                    self.pos += 1;
                    return Ok(match owned {
                        Some(mut s) => {
                            s.push_str(text);
                            Cow::Owned(s)
                        }
                        None => Cow::Borrowed(text),
                    });
                }
                Some(b'\\') => {
                    let s = owned.get_or_insert_with(String::new);
                    s.push_str(&self.text[run..self.pos]);
                    let c = self.escape()?;
                    s.push(c);
                    run = self.pos;
                }
                Some(b) if b < 0x20 => {
                    return Err(invalid(self.pos, "a control character in a string"))
                }
                Some(_) => self.non_ascii()?,
            }
        }
    }

    /// One raw non-ASCII character (already known to be UTF-8).
    fn non_ascii(&mut self) -> Result<(), Invalid> {
        let c = self.text[self.pos..]
            .chars()
            .next()
            .ok_or_else(|| invalid(self.pos, "unterminated string"))?;
        if is_noncharacter(u32::from(c)) {
            return Err(invalid(self.pos, "a noncharacter code point"));
        }
        self.pos += c.len_utf8();
        Ok(())
    }

    /// An escape from its backslash: the character it stands for.
    fn escape(&mut self) -> Result<char, Invalid> {
        let at = self.pos;
        let Some(&kind) = self.bytes.get(at + 1) else {
            return Err(invalid(at, "unterminated string"));
        };
        self.pos += 2;
        let c = match kind {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => return self.unicode_escape(at),
            _ => return Err(invalid(at, "an unknown escape")),
        };
        Ok(c)
    }

    /// `\uXXXX`, or a surrogate pair `\uD8xx\uDCxx`, after its `\u`.
    fn unicode_escape(&mut self, at: usize) -> Result<char, Invalid> {
        let high = self.hex4()?;
        let code = match high {
            0xD800..=0xDBFF => {
                if !self.bytes[self.pos..].starts_with(b"\\u") {
                    return Err(invalid(at, "a lone surrogate"));
                }
                self.pos += 2;
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(invalid(at, "a lone surrogate"));
                }
                0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(invalid(at, "a lone surrogate")),
            c => c,
        };
        if is_noncharacter(code) {
            return Err(invalid(at, "a noncharacter code point"));
        }
        char::from_u32(code).ok_or_else(|| invalid(at, "not a Unicode scalar value"))
    }

    fn hex4(&mut self) -> Result<u32, Invalid> {
        let digits = self
            .bytes
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| invalid(self.pos, "a short \\u escape"))?;
        let mut v = 0u32;
        for &d in digits {
            let n = char::from(d)
                .to_digit(16)
                .ok_or_else(|| invalid(self.pos, "a bad \\u escape"))?;
            v = v * 16 + n;
        }
        self.pos += 4;
        Ok(v)
    }

    /// RFC 8259's number grammar; then finite as a double.
    fn number(&mut self) -> Result<(), Invalid> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let int_start = self.pos;
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(invalid(self.pos, "a number needs digits")),
        }
        let int_digits = self.pos - int_start;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.require_digits()?;
        }
        let mut exponent = false;
        if let Some(b'e' | b'E') = self.peek() {
            exponent = true;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.require_digits()?;
        }
        // Under 309 integer digits and no exponent: always finite.
        if exponent || int_digits > 308 {
            let finite = self.text[start..self.pos]
                .parse::<f64>()
                .is_ok_and(f64::is_finite);
            if !finite {
                return Err(invalid(start, "a number out of a double's range"));
            }
        }
        Ok(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    fn require_digits(&mut self) -> Result<(), Invalid> {
        let before = self.pos;
        self.digits();
        if self.pos == before {
            return Err(invalid(self.pos, "a number needs digits"));
        }
        Ok(())
    }
}

/// U+FDD0..U+FDEF and the last two code points of every plane.
fn is_noncharacter(c: u32) -> bool {
    (0xFDD0..=0xFDEF).contains(&c) || (c & 0xFFFE) == 0xFFFE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &[u8]) {
        assert_eq!(validate(s), Ok(()), "{:?}", String::from_utf8_lossy(s));
    }

    fn refused(s: &[u8]) -> &'static str {
        match validate(s) {
            Ok(()) => panic!("accepted {:?}", String::from_utf8_lossy(s)),
            Err(e) => e.why,
        }
    }

    #[test]
    fn plain_json_of_every_kind_is_accepted() {
        for s in [
            &b"{}"[..],
            b"[]",
            b" \t\r\n{ \"a\" : [1, -0, 0.5, -1.25e-3, 2E+10, true, false, null, \"x\"] } \n",
            b"\"just a string\"",
            b"0",
            b"-12.5",
            b"null",
            br#"{"a":{"b":{"c":[[[]]]}},"d":"e"}"#,
            br#"{"amount": 10, "currency": "EUR", "note": "caf\u00e9 \"q\" \\ \/ \b\f\n\r\t"}"#,
        ] {
            ok(s);
        }
    }

    #[test]
    fn unicode_that_is_text_is_accepted() {
        ok("{\"a\":\"café ünïcode 日本 😀\"}".as_bytes());
        ok(br#"{"a":"\ud83d\ude00"}"#);
        ok(br#"{"a":"\u0000 \uffFD \uD7FF \uE000"}"#);
    }

    #[test]
    fn numbers_a_double_holds_are_accepted() {
        ok(b"1e308");
        ok(b"-1.7976931348623157e308");
        ok(b"1e-999999");
        ok(b"123456789012345678901234567890");
        ok(format!("1{}", "0".repeat(307)).as_bytes());
    }

    #[test]
    fn bytes_that_are_not_utf8_are_refused() {
        assert_eq!(refused(b"{\"a\":\"\xff\xfe\"}"), "not UTF-8");
        assert_eq!(refused(b"{\"a\":\"\xc0\xaf\"}"), "not UTF-8", "overlong /");
        assert_eq!(
            refused(b"{\"a\":\"\xe0\x80\xaf\"}"),
            "not UTF-8",
            "overlong, 3 bytes"
        );
        assert_eq!(
            refused(b"{\"a\":\"\xed\xa0\x80\"}"),
            "not UTF-8",
            "surrogate"
        );
        assert_eq!(
            refused(b"\"\xf4\x90\x80\x80\""),
            "not UTF-8",
            "above U+10FFFF"
        );
        assert_eq!(refused("\u{feff}{}".as_bytes()), "a byte-order mark");
    }

    #[test]
    fn lone_surrogates_and_noncharacters_are_refused() {
        for s in [
            &br#"{"a":"\ud800"}"#[..],
            br#"{"a":"\udc00"}"#,
            br#"{"a":"\ud800\u0041"}"#,
            br#"{"a":"\ud800x"}"#,
            br#"["\uDBFF"]"#,
        ] {
            assert_eq!(refused(s), "a lone surrogate");
        }
        assert_eq!(refused(br#""\uffff""#), "a noncharacter code point");
        assert_eq!(refused(br#""\ufdd0""#), "a noncharacter code point");
        assert_eq!(refused(br#""\ud83f\udffe""#), "a noncharacter code point");
        assert_eq!(
            refused("\"\u{fffe}\"".as_bytes()),
            "a noncharacter code point"
        );
    }

    #[test]
    fn numbers_no_double_holds_are_refused() {
        assert_eq!(
            refused(br#"{"a":1e999999}"#),
            "a number out of a double's range"
        );
        assert_eq!(refused(b"-1e309"), "a number out of a double's range");
        assert_eq!(
            refused(format!("1{}", "0".repeat(309)).as_bytes()),
            "a number out of a double's range"
        );
    }

    #[test]
    fn a_name_given_twice_is_refused_even_when_escaped() {
        assert_eq!(
            refused(br#"{"a":1,"a":2}"#),
            "a member name given twice in one object"
        );
        assert_eq!(
            refused(br#"{"a":1,"\u0061":2}"#),
            "a member name given twice in one object"
        );
        let many: Vec<String> = (0..20).map(|i| format!("\"k{i}\":{i}")).collect();
        ok(format!("{{{}}}", many.join(",")).as_bytes());
        let again = format!("{{{},\"k7\":0}}", many.join(","));
        assert_eq!(
            refused(again.as_bytes()),
            "a member name given twice in one object"
        );
        ok(br#"{"a":{"a":1},"b":{"a":2}}"#);
        ok(br#"[{"a":1},{"a":1}]"#);
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        ok(deep(DEPTH_MAX).as_bytes());
        assert_eq!(refused(deep(DEPTH_MAX + 1).as_bytes()), "nested too deep");
        let objects = format!(
            "{}1{}",
            "{\"a\":".repeat(DEPTH_MAX + 1),
            "}".repeat(DEPTH_MAX + 1)
        );
        assert_eq!(refused(objects.as_bytes()), "nested too deep");
    }

    #[test]
    fn syntax_errors_are_refused() {
        for s in [
            &b""[..],
            b" ",
            b"{",
            b"{\"a\"}",
            b"{\"a\":}",
            b"{\"a\":1,}",
            b"[1,]",
            b"[1 2]",
            b"{a:1}",
            b"'x'",
            b"01",
            b"1.",
            b".5",
            b"+1",
            b"1e",
            b"-",
            b"NaN",
            b"Infinity",
            b"tru",
            b"nul",
            b"{} {}",
            b"\"a\tb\"",
            b"\"\\x\"",
            b"\"\\u12\"",
            b"\"\\u12G4\"",
            b"\"abc",
            b"[\"a\" : 1]",
        ] {
            refused(s);
        }
    }

    #[test]
    fn errors_say_where() {
        let e = validate(br#"{"ok":1,"bad":"\ud800"}"#).unwrap_err();
        assert_eq!(e.at, 15);
        assert_eq!(e.to_string(), "a lone surrogate at byte 15");
    }
}
