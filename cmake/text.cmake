# Text subsystem: the tokenizer's pre-tokenizer regexes (Oniguruma, the engine HF
# tokenizers uses) and Unicode normalisation (utf8proc).
pkg_check_modules(ONIG REQUIRED IMPORTED_TARGET oniguruma)
pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)
target_link_libraries(mimo_lib PUBLIC PkgConfig::ONIG PkgConfig::UTF8PROC)
