use super::*;

fn pm(patterns: &[&str]) -> DockerIgnore {
    DockerIgnore::new(patterns.iter().copied()).unwrap()
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Want {
    Fail,
    Exact,
    Inexact,
}
use Want::*;

/// moby/patternmatcher `TestMatches` (Linux entries).
const MATCHES: &[(&str, &str, Want)] = &[
    ("**", "file", Exact),
    ("**", "file/", Exact),
    ("**/", "file", Exact),
    ("**/", "file/", Exact),
    ("**", "/", Exact),
    ("**/", "/", Exact),
    ("**", "dir/file", Exact),
    ("**/", "dir/file", Exact),
    ("**", "dir/file/", Exact),
    ("**/", "dir/file/", Exact),
    ("**/**", "dir/file", Exact),
    ("**/**", "dir/file/", Exact),
    ("dir/**", "dir/file", Exact),
    ("dir/**", "dir/file/", Exact),
    ("dir/**", "dir/dir2/file", Exact),
    ("dir/**", "dir/dir2/file/", Exact),
    ("**/dir", "dir", Exact),
    ("**/dir", "dir/file", Inexact),
    ("**/dir2/*", "dir/dir2/file", Exact),
    ("**/dir2/*", "dir/dir2/file/", Inexact),
    ("**/dir2/**", "dir/dir2/dir3/file", Exact),
    ("**/dir2/**", "dir/dir2/dir3/file/", Exact),
    ("**file", "file", Exact),
    ("**file", "dir/file", Exact),
    ("**/file", "dir/file", Exact),
    ("**file", "dir/dir/file", Exact),
    ("**/file", "dir/dir/file", Exact),
    ("**/file*", "dir/dir/file", Exact),
    ("**/file*", "dir/dir/file.txt", Exact),
    ("**/file*txt", "dir/dir/file.txt", Exact),
    ("**/file*.txt", "dir/dir/file.txt", Exact),
    ("**/file*.txt*", "dir/dir/file.txt", Exact),
    ("**/**/*.txt", "dir/dir/file.txt", Exact),
    ("**/**/*.txt2", "dir/dir/file.txt", Fail),
    ("**/*.txt", "file.txt", Exact),
    ("**/**/*.txt", "file.txt", Exact),
    ("a**/*.txt", "a/file.txt", Exact),
    ("a**/*.txt", "a/dir/file.txt", Exact),
    ("a**/*.txt", "a/dir/dir/file.txt", Exact),
    ("a/*.txt", "a/dir/file.txt", Fail),
    ("a/*.txt", "a/file.txt", Exact),
    ("a/*.txt**", "a/file.txt", Exact),
    ("a[b-d]e", "ae", Fail),
    ("a[b-d]e", "ace", Exact),
    ("a[b-d]e", "aae", Fail),
    ("a[^b-d]e", "aze", Exact),
    (".*", ".foo", Exact),
    (".*", "foo", Fail),
    ("abc.def", "abcdef", Fail),
    ("abc.def", "abc.def", Exact),
    ("abc.def", "abcZdef", Fail),
    ("abc?def", "abcZdef", Exact),
    ("abc?def", "abcdef", Fail),
    ("**/foo/bar", "foo/bar", Exact),
    ("**/foo/bar", "dir/foo/bar", Exact),
    ("**/foo/bar", "dir/dir2/foo/bar", Exact),
    ("abc/**", "abc", Fail),
    ("abc/**", "abc/def", Exact),
    ("abc/**", "abc/def/ghi", Exact),
    ("**/.foo", ".foo", Exact),
    ("**/.foo", "bar.foo", Fail),
    ("a(b)c/def", "a(b)c/def", Exact),
    ("a(b)c/def", "a(b)c/xyz", Fail),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", Exact),
    (
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        Exact,
    ),
    (
        "dist/*.whl",
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        Exact,
    ),
    ("a\\\\", "a\\", Exact),
    ("a\\*b", "a*b", Exact),
];

const MULTI: &[(&[&str], &str, Want)] = &[
    (&["**", "!util/docker/web"], "util/docker/web/foo", Fail),
    (
        &["**", "!util/docker/web", "util/docker/web/foo"],
        "util/docker/web/foo",
        Exact,
    ),
    (
        &["**", "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"],
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        Fail,
    ),
    (
        &["**", "!dist/*.whl"],
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        Fail,
    ),
];

#[test]
fn moby_matches_table() {
    for (pattern, text, want) in MATCHES {
        let m = pm(&[pattern]);
        assert_eq!(
            m.matches_exact(text),
            *want == Exact,
            "exact: pattern {pattern:?} text {text:?}"
        );
        assert_eq!(
            m.matches(text),
            *want != Fail,
            "parents: pattern {pattern:?} text {text:?}"
        );
    }
    for (patterns, text, want) in MULTI {
        assert_eq!(
            pm(patterns).matches(text),
            *want != Fail,
            "patterns {patterns:?} text {text:?}"
        );
    }
}

/// moby/patternmatcher `matchTests` (from Go's filepath.Match tests), run through `Matches`.
#[test]
fn go_filepath_match_table() {
    // (pattern, name, matches, bad pattern)
    let cases: &[(&str, &str, bool, bool)] = &[
        ("abc", "abc", true, false),
        ("*", "abc", true, false),
        ("*c", "abc", true, false),
        ("a*", "a", true, false),
        ("a*", "abc", true, false),
        ("a*", "ab/c", true, false),
        ("a*/b", "abc/b", true, false),
        ("a*/b", "a/c/b", false, false),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", true, false),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true, false),
        ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false, false),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", false, false),
        ("a*b?c*x", "abxbbxdbxebxczzx", true, false),
        ("a*b?c*x", "abxbbxdbxebxczzy", false, false),
        ("ab[c]", "abc", true, false),
        ("ab[b-d]", "abc", true, false),
        ("ab[e-g]", "abc", false, false),
        ("ab[^c]", "abc", false, false),
        ("ab[^b-d]", "abc", false, false),
        ("ab[^e-g]", "abc", true, false),
        ("a\\*b", "a*b", true, false),
        ("a\\*b", "ab", false, false),
        ("a?b", "a☺b", true, false),
        ("a[^a]b", "a☺b", true, false),
        ("a???b", "a☺b", false, false),
        ("a[^a][^a][^a]b", "a☺b", false, false),
        ("[a-ζ]*", "α", true, false),
        ("*[a-ζ]", "A", false, false),
        ("a?b", "a/b", false, false),
        ("a*b", "a/b", false, false),
        ("[\\]a]", "]", true, false),
        ("[\\-]", "-", true, false),
        ("[x\\-]", "x", true, false),
        ("[x\\-]", "-", true, false),
        ("[x\\-]", "z", false, false),
        ("[\\-x]", "x", true, false),
        ("[\\-x]", "-", true, false),
        ("[\\-x]", "a", false, false),
        ("[]a]", "]", false, true),
        ("[-]", "-", false, true),
        ("[x-]", "x", false, true),
        ("[x-]", "-", false, true),
        ("[x-]", "z", false, true),
        ("[-x]", "x", false, true),
        ("[-x]", "-", false, true),
        ("[-x]", "a", false, true),
        ("\\", "a", false, true),
        ("[a-b-c]", "a", false, true),
        ("[", "a", false, true),
        ("[^", "a", false, true),
        ("[^bc", "a", false, true),
        ("a[", "a", false, true),
        ("a[", "ab", false, true),
        ("*x", "xxx", true, false),
    ];
    for (pattern, name, want, bad) in cases {
        match DockerIgnore::new([pattern]) {
            Ok(m) => {
                assert!(!bad, "pattern {pattern:?} should be rejected");
                assert_eq!(m.matches(name), *want, "pattern {pattern:?} name {name:?}");
            }
            Err(e) => {
                assert!(bad, "pattern {pattern:?} rejected: {e}");
                assert_eq!(e.to_string(), "syntax error in pattern");
            }
        }
    }
}

#[test]
fn simple_moby_cases() {
    assert!(pm(&["*"]).matches("fileutils.go"));
    assert!(pm(&["*.go"]).matches("fileutils.go"));
    assert!(pm(&["!fileutils.go", "*.go"]).matches("fileutils.go"));
    assert!(!pm(&["docs", "!docs/README.md"]).matches("docs/README.md"));
    assert!(!pm(&["docs/", "!docs/README.md"]).matches("docs/README.md"));
    assert!(!pm(&["docs/*", "!docs/README.md"]).matches("docs/README.md"));
    assert!(!pm(&["*.go", "!fileutils.go"]).matches("fileutils.go"));
    assert!(!pm(&["*.go"]).matches("."));
    assert!(!pm(&[]).matches("/any/path/there"));
    assert_eq!(
        DockerIgnore::new(["!"]).unwrap_err(),
        IgnoreError::LoneExclamation
    );
    assert_eq!(
        IgnoreError::LoneExclamation.to_string(),
        "illegal exclusion pattern: \"!\""
    );
    assert!(DockerIgnore::new(["["]).is_err());
    assert_eq!(pm(&["docs", "config", ""]).patterns(), vec!["docs", "config"]);
    assert!(pm(&["docs", "  !docs/README.md"]).has_exclusions());
    assert!(pm(&["docs", "!docs/README.md  "]).has_exclusions());
    assert!(!pm(&["docs"]).has_exclusions());
}

#[test]
fn read_ignore_file_like_moby() {
    let content = "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! ";
    assert_eq!(
        read_ignore_file(content),
        vec![
            "test1",
            "test2",
            "a/file/here",
            "lastfile",
            "!inverted/abs/path",
            "!",
            "!"
        ]
    );
    assert_eq!(
        read_ignore_file("\u{feff}./foo/../bar//baz/\r\n  # not a comment\n"),
        vec!["bar/baz", "# not a comment"]
    );
    assert_eq!(read_ignore_file("/\n./\n"), vec!["/", "."]);
}

#[test]
fn clean_path_like_go() {
    for (input, want) in [
        ("", "."),
        ("a/b/../c", "a/c"),
        ("./a", "a"),
        ("/../a", "/a"),
        ("../../a", "../../a"),
        ("a//b/", "a/b"),
        ("/", "/"),
        ("a/..", "."),
    ] {
        assert_eq!(clean_path(input), want, "{input}");
    }
}

#[test]
fn dockerignore_file_end_to_end() {
    let ignore =
        DockerIgnore::parse("# build output\ntarget\n*.log\n!important.log\n**/node_modules\n/.git\n")
            .unwrap();
    let cases = [
        ("target", true),
        ("target/debug/app", true),
        ("src/main.rs", false),
        ("build.log", true),
        ("important.log", false),
        ("logs/x.log", false),
        ("web/node_modules/x/index.js", true),
        ("node_modules", true),
        (".git/HEAD", true),
        ("sub/.git/HEAD", false),
    ];
    for (path, excluded) in cases {
        assert_eq!(ignore.matches(path), excluded, "{path}");
    }
}

#[test]
fn last_match_wins() {
    let m = pm(&["*.md", "!README*.md", "README-secret.md"]);
    assert!(m.matches("CHANGELOG.md"));
    assert!(!m.matches("README.md"));
    assert!(m.matches("README-secret.md"));
}

#[test]
fn excluded_directories_still_walked_when_an_exception_reaches_inside() {
    let m = pm(&["docs", "!docs/README.md"]);
    assert!(m.matches("docs"));
    assert!(m.may_include_under("docs"));
    assert!(!m.matches("docs/README.md"));
    assert!(m.matches("docs/other.md"));

    let m = pm(&["vendor", "!vendor/*/LICENSE"]);
    assert!(m.may_include_under("vendor"));
    assert!(m.may_include_under("vendor/lib"));
    assert!(!m.matches("vendor/lib/LICENSE"));
    assert!(m.matches("vendor/lib/code.go"));

    let m = pm(&["a", "b", "!a/keep"]);
    assert!(!m.may_include_under("b"));
    assert!(m.may_include_under("a"));
    assert!(!m.may_include_under("a/other"));

    let m = pm(&["**", "!**/*.rs"]);
    assert!(m.may_include_under("anything/deep"));
    assert!(!m.matches("anything/deep/x.rs"));

    let m = pm(&["build"]);
    assert!(
        !m.may_include_under("build"),
        "no exceptions: never walk excluded dirs"
    );

    let m = pm(&["src", "!src"]);
    assert!(
        m.may_include_under("src/sub"),
        "an exception naming an ancestor re-includes the dir"
    );
    assert!(!m.matches("src/sub/x"));

    let m = pm(&["d*", "!d?ta/k[a-z]y"]);
    assert!(m.may_include_under("data"));
    assert!(!m.may_include_under("docs"));
    assert!(!m.matches("data/key"));
}

#[test]
fn build_files_stay_in_the_context() {
    let patterns = read_ignore_file("*\n!src\n");
    let kept = keep_build_files(patterns.clone(), "Dockerfile", false);
    assert_eq!(kept, vec!["*", "!src", "!.dockerignore", "!Dockerfile"]);
    let m = DockerIgnore::new(&kept).unwrap();
    assert!(!m.matches("Dockerfile") && !m.matches(".dockerignore") && m.matches("other"));
    assert_eq!(
        keep_build_files(patterns.clone(), "Dockerfile", true),
        vec!["*", "!src", "!.dockerignore"]
    );
    assert_eq!(
        keep_build_files(vec!["*.md".into()], "build/Dockerfile", false),
        vec!["*.md"]
    );
}
