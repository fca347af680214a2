//! Arbitrary words through the shell lexer (`shell::Lexer`), in every mode: must never panic.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use rbuild_dockerfile::shell::Lexer;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let word = String::from_utf8_lossy(rest);
    let env: BTreeMap<String, String> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
        ("PAT", "*a?b\\"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let escape = if mode & 1 == 0 { '\\' } else { '`' };
    let lexer = Lexer::new(escape)
        .with_raw_quotes(mode & 2 != 0)
        .with_raw_escapes(mode & 4 != 0)
        .with_skip_unset_env(mode & 8 != 0);
    if let Err(e) = lexer.process_word(&word, &env) {
        assert!(e.offset <= word.len(), "offset {} past the word: {e:?}", e.offset);
    }
    let _ = lexer.process_words(&word, &env);
});
