//! Reading the Go (RE2) regular expressions that patternmatcher builds, and writing the same
//! language in Rust `regex` syntax.
//!
//! patternmatcher copies `[`, `]` and `\x` from a pattern into its expression unchanged and
//! inserts `[^/]*`, `[^/]` and `(.*/)?` even inside a bracket class, so what a pattern matches is
//! decided by how Go's `regexp/syntax` parser (Perl flags) reads that text: inside a class `[` is
//! a literal unless it opens `[:name:]`, a class ends at the first `]` that is not its first
//! character, `\d` `\s` `\w` are ASCII, and escapes follow Go's rules. Rust's `regex` reads the
//! same text differently (nested classes, `&&`/`--`/`~~` operators, Unicode `\d`), so the
//! expression is parsed here with Go's rules and re-emitted with every class written as explicit
//! code-point ranges. Only the subset patternmatcher can produce is accepted: alternation (`|`),
//! counted repetition (`{n}`) and `(?flags)` groups never occur unescaped in its output and are
//! reported as errors rather than guessed at. This module never panics on any input.

use super::pattern::PatternError;

/// Translate a Go regular expression (as produced by patternmatcher) to Rust `regex` syntax.
pub(crate) fn to_rust_syntax(go: &str) -> Result<String, PatternError> {
    let mut reader = Reader {
        src: go,
        chars: go.chars().collect(),
        pos: 0,
        out: String::new(),
    };
    reader.expression()?;
    Ok(reader.out)
}

/// Go's ASCII Perl classes (`\d`, `\s`, `\w`), as Rust class bodies.
fn perl_class(letter: char) -> Option<&'static str> {
    Some(match letter {
        'd' => "[0-9]",
        'D' => "[^0-9]",
        's' => "[\\t\\n\\x0C\\r ]",
        'S' => "[^\\t\\n\\x0C\\r ]",
        'w' => "[0-9A-Za-z_]",
        'W' => "[^0-9A-Za-z_]",
        _ => return None,
    })
}

/// The POSIX class names Go accepts inside brackets (`[:alpha:]`, `[:^alpha:]`).
const POSIX_CLASSES: [&str; 14] = [
    "alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph", "lower", "print", "punct",
    "space", "upper", "word", "xdigit",
];

/// Go's `unicode.Categories` names, the only general categories `\p{..}` accepts.
const GO_CATEGORIES: [&str; 36] = [
    "C", "Cc", "Cf", "Co", "Cs", "L", "Ll", "Lm", "Lo", "Lt", "Lu", "M", "Mc", "Me", "Mn", "N",
    "Nd", "Nl", "No", "P", "Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps", "S", "Sc", "Sk", "Sm", "So",
    "Z", "Zl", "Zp", "Zs",
];

/// Go's `unicode.Scripts` names (Unicode 15, Go 1.21 and later), matched case-sensitively.
const GO_SCRIPTS: [&str; 163] = [
    "Adlam",
    "Ahom",
    "Anatolian_Hieroglyphs",
    "Arabic",
    "Armenian",
    "Avestan",
    "Balinese",
    "Bamum",
    "Bassa_Vah",
    "Batak",
    "Bengali",
    "Bhaiksuki",
    "Bopomofo",
    "Brahmi",
    "Braille",
    "Buginese",
    "Buhid",
    "Canadian_Aboriginal",
    "Carian",
    "Caucasian_Albanian",
    "Chakma",
    "Cham",
    "Cherokee",
    "Chorasmian",
    "Common",
    "Coptic",
    "Cuneiform",
    "Cypriot",
    "Cypro_Minoan",
    "Cyrillic",
    "Deseret",
    "Devanagari",
    "Dives_Akuru",
    "Dogra",
    "Duployan",
    "Egyptian_Hieroglyphs",
    "Elbasan",
    "Elymaic",
    "Ethiopic",
    "Georgian",
    "Glagolitic",
    "Gothic",
    "Grantha",
    "Greek",
    "Gujarati",
    "Gunjala_Gondi",
    "Gurmukhi",
    "Han",
    "Hangul",
    "Hanifi_Rohingya",
    "Hanunoo",
    "Hatran",
    "Hebrew",
    "Hiragana",
    "Imperial_Aramaic",
    "Inherited",
    "Inscriptional_Pahlavi",
    "Inscriptional_Parthian",
    "Javanese",
    "Kaithi",
    "Kannada",
    "Katakana",
    "Kawi",
    "Kayah_Li",
    "Kharoshthi",
    "Khitan_Small_Script",
    "Khmer",
    "Khojki",
    "Khudawadi",
    "Lao",
    "Latin",
    "Lepcha",
    "Limbu",
    "Linear_A",
    "Linear_B",
    "Lisu",
    "Lycian",
    "Lydian",
    "Mahajani",
    "Makasar",
    "Malayalam",
    "Mandaic",
    "Manichaean",
    "Marchen",
    "Masaram_Gondi",
    "Medefaidrin",
    "Meetei_Mayek",
    "Mende_Kikakui",
    "Meroitic_Cursive",
    "Meroitic_Hieroglyphs",
    "Miao",
    "Modi",
    "Mongolian",
    "Mro",
    "Multani",
    "Myanmar",
    "Nabataean",
    "Nag_Mundari",
    "Nandinagari",
    "New_Tai_Lue",
    "Newa",
    "Nko",
    "Nushu",
    "Nyiakeng_Puachue_Hmong",
    "Ogham",
    "Ol_Chiki",
    "Old_Hungarian",
    "Old_Italic",
    "Old_North_Arabian",
    "Old_Permic",
    "Old_Persian",
    "Old_Sogdian",
    "Old_South_Arabian",
    "Old_Turkic",
    "Old_Uyghur",
    "Oriya",
    "Osage",
    "Osmanya",
    "Pahawh_Hmong",
    "Palmyrene",
    "Pau_Cin_Hau",
    "Phags_Pa",
    "Phoenician",
    "Psalter_Pahlavi",
    "Rejang",
    "Runic",
    "Samaritan",
    "Saurashtra",
    "Sharada",
    "Shavian",
    "Siddham",
    "SignWriting",
    "Sinhala",
    "Sogdian",
    "Sora_Sompeng",
    "Soyombo",
    "Sundanese",
    "Syloti_Nagri",
    "Syriac",
    "Tagalog",
    "Tagbanwa",
    "Tai_Le",
    "Tai_Tham",
    "Tai_Viet",
    "Takri",
    "Tamil",
    "Tangsa",
    "Tangut",
    "Telugu",
    "Thaana",
    "Thai",
    "Tibetan",
    "Tifinagh",
    "Tirhuta",
    "Toto",
    "Ugaritic",
    "Vai",
    "Vithkuqi",
    "Wancho",
    "Warang_Citi",
    "Yezidi",
    "Yi",
    "Zanabazar_Square",
];

struct Reader<'a> {
    src: &'a str,
    chars: Vec<char>,
    pos: usize,
    out: String,
}

impl Reader<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn unsupported(&self, what: &str) -> PatternError {
        PatternError::Regexp {
            regexp: self.src.to_string(),
            reason: what.to_string(),
        }
    }

    /// The whole expression: a sequence of atoms, each optionally repeated.
    fn expression(&mut self) -> Result<(), PatternError> {
        let mut depth = 0usize;
        // Whether the last thing written can take a repetition operator.
        let mut repeatable = false;
        while let Some(c) = self.bump() {
            match c {
                '^' | '$' => {
                    self.out.push(c);
                    repeatable = false;
                }
                '.' => {
                    self.out.push('.');
                    repeatable = true;
                }
                '(' => {
                    if self.peek() == Some('?') {
                        return Err(self.unsupported("group flags `(?` are not supported"));
                    }
                    self.out.push_str("(?:");
                    depth += 1;
                    repeatable = false;
                }
                ')' => {
                    if depth == 0 {
                        return Err(self.unsupported("unexpected `)`"));
                    }
                    depth -= 1;
                    self.out.push(')');
                    repeatable = true;
                }
                '*' | '?' | '+' => {
                    if !repeatable {
                        return Err(self.unsupported("missing argument to repetition operator"));
                    }
                    self.out.push(c);
                    if self.peek() == Some('?') {
                        self.bump();
                        self.out.push('?');
                    }
                    if matches!(self.peek(), Some('*' | '?' | '+')) {
                        return Err(self.unsupported("invalid nested repetition operator"));
                    }
                    repeatable = false;
                }
                '|' | '{' => {
                    return Err(
                        self.unsupported("alternation and counted repetition are not supported")
                    )
                }
                '[' => {
                    self.class()?;
                    repeatable = true;
                }
                '\\' => repeatable = self.top_level_escape()?,
                other => {
                    self.literal(other);
                    repeatable = true;
                }
            }
        }
        if depth > 0 {
            return Err(self.unsupported("missing closing `)`"));
        }
        Ok(())
    }

    fn literal(&mut self, c: char) {
        self.out.push_str(&format!("\\x{{{:X}}}", u32::from(c)));
    }

    /// An escape outside a class (the `\` is consumed); returns whether it can be repeated.
    fn top_level_escape(&mut self) -> Result<bool, PatternError> {
        match self.peek() {
            Some('A') => {
                self.bump();
                self.out.push_str("\\A");
                return Ok(false);
            }
            Some('z') => {
                self.bump();
                self.out.push_str("\\z");
                return Ok(false);
            }
            Some('b') => {
                self.bump();
                self.out.push_str("(?-u:\\b)");
                return Ok(false);
            }
            Some('B') => {
                self.bump();
                self.out.push_str("(?-u:\\B)");
                return Ok(false);
            }
            Some('Q') => {
                self.bump();
                // Literal text up to `\E` or the end.
                while let Some(c) = self.bump() {
                    if c == '\\' && self.peek() == Some('E') {
                        self.bump();
                        break;
                    }
                    self.literal(c);
                }
                return Ok(true);
            }
            Some(letter @ ('p' | 'P')) => {
                let item = self.unicode_class(letter)?;
                self.out.push_str(&item);
                return Ok(true);
            }
            Some(letter) => {
                if let Some(class) = perl_class(letter) {
                    self.bump();
                    self.out.push_str(class);
                    return Ok(true);
                }
            }
            None => {}
        }
        let c = self.escaped_char()?;
        self.literal(c);
        Ok(true)
    }

    /// `\pX`, `\p{Name}`, `\PX`, `\p{^Name}` (the `\` is consumed, `p`/`P` is next).
    fn unicode_class(&mut self, letter: char) -> Result<String, PatternError> {
        self.bump();
        let mut negated = letter == 'P';
        let name: String = match self.bump() {
            Some('{') => {
                let mut name = String::new();
                loop {
                    match self.bump() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => {
                            return Err(PatternError::InvalidEscape(format!("\\{letter}{{{name}")))
                        }
                    }
                }
                name
            }
            Some(c) => c.to_string(),
            None => return Err(PatternError::InvalidEscape(format!("\\{letter}"))),
        };
        let name = match name.strip_prefix('^') {
            Some(rest) => {
                negated = !negated;
                rest.to_string()
            }
            None => name,
        };
        // Go looks names up case-sensitively: `Any`, a general category, or a script.
        let property = if name == "Any" {
            "Any".to_string()
        } else if GO_CATEGORIES.contains(&name.as_str()) {
            format!("gc={name}")
        } else if GO_SCRIPTS.contains(&name.as_str()) {
            format!("sc={name}")
        } else {
            return Err(PatternError::UnknownClass(format!("\\{letter}{{{name}}}")));
        };
        Ok(format!(
            "\\{}{{{property}}}",
            if negated { 'P' } else { 'p' }
        ))
    }

    /// Go's `parseEscape` (the `\` is consumed): one character.
    fn escaped_char(&mut self) -> Result<char, PatternError> {
        let c = self.bump().ok_or(PatternError::TrailingBackslash)?;
        let invalid = |text: String| PatternError::InvalidEscape(text);
        match c {
            c if c.is_ascii() && !c.is_ascii_alphanumeric() => Ok(c),
            '1'..='7' if !matches!(self.peek(), Some('0'..='7')) => Err(invalid(format!("\\{c}"))),
            '0'..='7' => {
                let mut value = c as u32 - '0' as u32;
                for _ in 0..2 {
                    match self.peek() {
                        Some(d @ '0'..='7') => {
                            self.bump();
                            value = value * 8 + (d as u32 - '0' as u32);
                        }
                        _ => break,
                    }
                }
                char::from_u32(value).ok_or_else(|| invalid(format!("\\{c}")))
            }
            'x' => self.hex_escape(),
            'a' => Ok('\u{7}'),
            'f' => Ok('\u{C}'),
            'n' => Ok('\n'),
            'r' => Ok('\r'),
            't' => Ok('\t'),
            'v' => Ok('\u{B}'),
            other => Err(invalid(format!("\\{other}"))),
        }
    }

    /// `\xHH` or `\x{H...}` (the `\x` is consumed).
    fn hex_escape(&mut self) -> Result<char, PatternError> {
        let mut text = String::from("\\x");
        let mut value: u32 = 0;
        if self.peek() == Some('{') {
            self.bump();
            text.push('{');
            let mut digits = 0;
            loop {
                let c = self
                    .bump()
                    .ok_or_else(|| PatternError::InvalidEscape(text.clone()))?;
                text.push(c);
                if c == '}' {
                    break;
                }
                let d = c
                    .to_digit(16)
                    .ok_or_else(|| PatternError::InvalidEscape(text.clone()))?;
                value = value.saturating_mul(16).saturating_add(d);
                if value > 0x10FFFF {
                    return Err(PatternError::InvalidEscape(text));
                }
                digits += 1;
            }
            if digits == 0 {
                return Err(PatternError::InvalidEscape(text));
            }
        } else {
            for _ in 0..2 {
                let c = self
                    .bump()
                    .ok_or_else(|| PatternError::InvalidEscape(text.clone()))?;
                text.push(c);
                let d = c
                    .to_digit(16)
                    .ok_or_else(|| PatternError::InvalidEscape(text.clone()))?;
                value = value * 16 + d;
            }
        }
        char::from_u32(value).ok_or(PatternError::InvalidEscape(text))
    }

    /// A bracket class (the `[` is consumed), read with Go's rules, written as explicit ranges.
    fn class(&mut self) -> Result<(), PatternError> {
        let mut body = String::new();
        let negated = self.peek() == Some('^');
        if negated {
            self.bump();
        }
        let mut first = true;
        loop {
            match self.peek() {
                None => return Err(PatternError::UnclosedClass),
                Some(']') if !first => {
                    self.bump();
                    break;
                }
                _ => {}
            }
            first = false;
            if self.peek() == Some('[')
                && self.peek_at(1) == Some(':')
                && self.chars.len() - self.pos > 2
            {
                if let Some(item) = self.posix_class()? {
                    body.push_str(&item);
                    continue;
                }
            }
            if self.peek() == Some('\\') {
                match self.peek_at(1) {
                    Some(letter @ ('p' | 'P')) => {
                        self.bump();
                        let item = self.unicode_class(letter)?;
                        body.push_str(&item);
                        continue;
                    }
                    Some(letter) => {
                        if let Some(class) = perl_class(letter) {
                            self.pos += 2;
                            body.push_str(class);
                            continue;
                        }
                    }
                    None => {}
                }
            }
            let lo = self.class_char()?;
            let mut hi = lo;
            if self.peek() == Some('-') && !matches!(self.peek_at(1), Some(']') | None) {
                self.bump();
                hi = self.class_char()?;
                if hi < lo {
                    return Err(PatternError::RangeOutOfOrder { lo, hi });
                }
            }
            body.push_str(&format!(
                "\\x{{{:X}}}-\\x{{{:X}}}",
                u32::from(lo),
                u32::from(hi)
            ));
        }
        self.out.push('[');
        if negated {
            self.out.push('^');
        }
        self.out.push_str(&body);
        self.out.push(']');
        Ok(())
    }

    /// `[:name:]` at the current position; `None` when no `:]` follows (then `[` is a literal).
    fn posix_class(&mut self) -> Result<Option<String>, PatternError> {
        // Go searches for `:]` anywhere after `[:`, even past the end of the class.
        let rest: String = self.chars[self.pos + 2..].iter().collect();
        let Some(end) = rest.find(":]") else {
            return Ok(None);
        };
        let inner = &rest[..end];
        let text = format!("[:{inner}:]");
        let name = inner.strip_prefix('^').unwrap_or(inner);
        if !POSIX_CLASSES.contains(&name) {
            return Err(PatternError::UnknownClass(text));
        }
        self.pos += 2 + inner.chars().count() + 2;
        Ok(Some(text))
    }

    /// One class character, escaped or not (Go's `parseClassChar`).
    fn class_char(&mut self) -> Result<char, PatternError> {
        match self.bump() {
            None => Err(PatternError::UnclosedClass),
            Some('\\') => self.escaped_char(),
            Some(c) => Ok(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go_match(go: &str, text: &str) -> Result<bool, PatternError> {
        let rust = to_rust_syntax(go)?;
        let re = regex::Regex::new(&rust).map_err(|e| PatternError::Regexp {
            regexp: go.to_string(),
            reason: e.to_string(),
        })?;
        Ok(re.is_match(text))
    }

    macro_rules! re2 {
        ($($name:ident: $go:expr, $text:expr => $want:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(go_match($go, $text), $want, "regexp {:?} on {:?}", $go, $text);
            }
        )*};
    }

    re2! {
        re2_literal: "^abc$", "abc" => Ok(true);
        re2_star_class: "^a[^/]*$", "abc" => Ok(true);
        re2_star_class_no_slash: "^a[^/]*$", "a/c" => Ok(false);
        re2_group_optional: "^(.*/)?x$", "a/b/x" => Ok(true);
        re2_nested_open_bracket_is_literal: "^[a[^/]*]$", "[^]" => Ok(true);
        re2_nested_open_bracket_not_union: "^[a[^/]*]$", "q]" => Ok(false);
        re2_first_bracket_literal: "^[]a]$", "]" => Ok(true);
        re2_dash_at_end_literal: "^[a-]$", "-" => Ok(true);
        re2_ampersands_are_literal: "^[a&&b]$", "&" => Ok(true);
        re2_posix_class: "^[[:alpha:]]$", "q" => Ok(true);
        re2_posix_class_negated: "^[[:^digit:]]$", "7" => Ok(false);
        re2_unknown_posix_class: "^[[:nope:]]$", "a" => Err(PatternError::UnknownClass("[:nope:]".into()));
        re2_perl_digit_ascii_only: "^\\d$", "٣" => Ok(false);
        re2_perl_word_in_class: "^[\\w.]$", "." => Ok(true);
        re2_octal: "^\\101$", "A" => Ok(true);
        re2_single_digit_backref_rejected: "^\\1$", "A" => Err(PatternError::InvalidEscape("\\1".into()));
        re2_hex: "^\\x41\\x{42}$", "AB" => Ok(true);
        re2_invalid_escape: "^\\q$", "q" => Err(PatternError::InvalidEscape("\\q".into()));
        re2_quote_until_end: "^\\Qa[^/]*$", "a[^/]*$" => Ok(true);
        re2_range_out_of_order: "^[l-O]$", "m" => Err(PatternError::RangeOutOfOrder { lo: 'l', hi: 'O' });
        re2_unclosed_class: "^[a", "a" => Err(PatternError::UnclosedClass);
        re2_unicode_class: "^\\pL$", "é" => Ok(true);
        re2_unicode_script: "^\\p{Greek}$", "α" => Ok(true);
        re2_unicode_negated_script: "^\\p{^Greek}$", "α" => Ok(false);
        re2_unicode_name_case_sensitive: "^\\pz$", "a" => Err(PatternError::UnknownClass("\\p{z}".into()));
        re2_caret_inside_is_anchor: "^a^b$", "a^b" => Ok(false);
        re2_close_bracket_outside_is_literal: "^a]$", "a]" => Ok(true);
    }

    #[test]
    fn nested_repetition_is_an_error() {
        assert!(to_rust_syntax("^a.**$").is_err());
    }

    #[test]
    fn lazy_star_is_kept() {
        assert_eq!(go_match("^.*?x$", "ax"), Ok(true));
    }
}
