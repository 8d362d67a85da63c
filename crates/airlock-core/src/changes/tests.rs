use super::lexer::parse_words;
use super::*;
use serde_json::json;

fn apply(base: Value, changes: &[&str]) -> Result<Value, ChangeError> {
    let Value::Object(mut config) = base else {
        panic!("base must be an object")
    };
    let changes: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
    apply_changes(&mut config, &changes)?;
    Ok(Value::Object(config))
}
fn ok(changes: &[&str]) -> Value {
    apply(json!({}), changes).unwrap()
}
fn err(changes: &[&str]) -> String {
    apply(json!({}), changes).unwrap_err().to_string()
}

#[test]
fn keywords() {
    assert_eq!(
        ok(&["cmd echo hi"])["Cmd"],
        json!(["/bin/sh", "-c", "echo hi"])
    );
    let e = err(&["RUN make"]);
    assert!(
        e.starts_with("bad change 'RUN make': RUN is not allowed"),
        "{e}"
    );
    assert!(e.contains("allowed: CMD, ENTRYPOINT"), "{e}");
    assert!(err(&["copy a b"]).contains("COPY is not allowed"));
    assert!(err(&["FROM x"]).contains("FROM is not allowed"));
    assert!(err(&["  "]).contains("empty instruction"));
    assert!(err(&["CMD [\"a\"]", "bogus"]).contains("BOGUS is not allowed"));
    assert!(err(&["CMD --foo bar"]).contains("unknown flag: foo"));
}

#[test]
fn cmd_and_entrypoint() {
    let c = ok(&[
        r#"CMD ["nginx", "-g", "daemon off;"]"#,
        "ENTRYPOINT  /entry.sh  $HOME ",
    ]);
    assert_eq!(c["Cmd"], json!(["nginx", "-g", "daemon off;"]));
    assert_eq!(
        c["Entrypoint"],
        json!(["/bin/sh", "-c", "/entry.sh  $HOME"])
    );
    // Not JSON: shell form. JSON but not strings: error.
    assert_eq!(
        ok(&["CMD [ \"a\""])["Cmd"],
        json!(["/bin/sh", "-c", "[ \"a\""])
    );
    assert_eq!(
        ok(&["CMD [a, b]"])["Cmd"],
        json!(["/bin/sh", "-c", "[a, b]"])
    );
    assert!(err(&["ENTRYPOINT [1, 2]"]).contains("strings only"));
    assert_eq!(ok(&["CMD []"])["Cmd"], json!([]));
    assert_eq!(ok(&["ENTRYPOINT"])["Entrypoint"], json!([]));
    // ENTRYPOINT leaves Cmd alone; a config Shell is honoured.
    let c = apply(
        json!({"Cmd": ["x"], "Shell": ["/bin/bash", "-c"]}),
        &["ENTRYPOINT run"],
    )
    .unwrap();
    assert_eq!(c["Cmd"], json!(["x"]));
    assert_eq!(c["Entrypoint"], json!(["/bin/bash", "-c", "run"]));
}

#[test]
fn env_forms() {
    let c = ok(&[
        r#"ENV A=1 B="two words" C='$A' D=x\ y E="q\"q""#,
        "ENV LEGACY some value  here",
    ]);
    assert_eq!(
        c["Env"],
        json!([
            "A=1",
            "B=two words",
            "C=$A",
            "D=x y",
            "E=q\"q",
            "LEGACY=some value  here"
        ])
    );
    let c = apply(
        json!({"Env": ["PATH=/bin", "X=1"]}),
        &["ENV PATH=/usr/bin:$PATH"],
    )
    .unwrap();
    assert_eq!(c["Env"], json!(["PATH=/usr/bin:/bin", "X=1"]));
    assert!(err(&["ENV"]).contains("at least one argument"));
    assert!(err(&["ENV A"]).contains("two arguments"));
    assert!(err(&["ENV =x"]).contains("names can not be blank"));
    assert!(err(&["ENV A=1 B"]).contains("needs key=value"));
    assert!(err(&["ENV A=\"open"]).contains("double-quote"));
    assert!(err(&["ENV A='open"]).contains("single-quote"));
}

#[test]
fn expansion() {
    let env = [
        "A=1".to_string(),
        "EMPTY=".to_string(),
        "SP=a b".to_string(),
    ];
    let x = |w: &str| expand_word(w, &env).unwrap();
    assert_eq!(x("$A-${A}-$UNSET-${UNSET}"), "1-1--");
    assert_eq!(
        x("${UNSET:-def}|${A:-def}|${EMPTY:-def}|${EMPTY-def}"),
        "def|1|def|"
    );
    assert_eq!(
        x("${A:+alt}|${UNSET:+alt}|${EMPTY:+alt}|${EMPTY+alt}"),
        "alt|||alt"
    );
    assert_eq!(x("${UNSET:-$A$A}|${UNSET:-\"q }\"}"), "11|q }");
    assert_eq!(x(r"\$A|'$A'|\\|a\b"), r"$A|$A|\|ab");
    assert_eq!(x(r#""$A \$A \x '$A'""#), r"1 $A \x '1'");
    assert_eq!(x("$ $1 a$"), "$  a$");
    assert_eq!(x("${A}b${SP}"), "1ba b");
    for bad in ["${A", "${}", "${A/x/y}", "${UNSET:?boom}", "${A:-x"] {
        assert!(expand_word(bad, &env).is_err(), "{bad}");
    }
    assert_eq!(
        expand_words(r#"$SP "x y" ''"#, &env).unwrap(),
        ["a", "b", "x y"]
    );
}

#[test]
fn later_instructions_see_earlier_env() {
    let c = ok(&[
        "ENV BASE=/srv PORT=8080",
        "ENV APP=$BASE/app LATE=$APP",
        "WORKDIR $APP",
        "EXPOSE ${PORT}",
        "USER ${USERNAME:-nobody}",
        "LABEL dir=$APP quoted='$APP'",
        "VOLUME $BASE/data",
        "STOPSIGNAL ${SIG:-SIGQUIT}",
        "CMD echo $APP",
    ]);
    // Within one ENV the pairs see the env from before it (LATE is empty), as Docker.
    assert_eq!(
        c["Env"],
        json!(["BASE=/srv", "PORT=8080", "APP=/srv/app", "LATE="])
    );
    assert_eq!(c["WorkingDir"], "/srv/app");
    assert_eq!(c["ExposedPorts"], json!({"8080/tcp": {}}));
    assert_eq!(c["User"], "nobody");
    assert_eq!(c["Labels"], json!({"dir": "/srv/app", "quoted": "$APP"}));
    assert_eq!(c["Volumes"], json!({"/srv/data": {}}));
    assert_eq!(c["StopSignal"], "SIGQUIT");
    assert_eq!(c["Cmd"], json!(["/bin/sh", "-c", "echo $APP"]));
}

#[test]
fn expose() {
    let c = ok(&[
        "EXPOSE 80 443/tcp 53/UDP 8000-8002 9/sctp 7/",
        "ENV P=\"1 2\"",
        "EXPOSE $P",
    ]);
    let keys: Vec<&String> = c["ExposedPorts"].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "1/tcp", "2/tcp", "443/tcp", "53/udp", "7/tcp", "80/tcp", "8000/tcp", "8001/tcp",
            "8002/tcp", "9/sctp"
        ]
    );
    let c = apply(json!({"ExposedPorts": {"22/tcp": {}}}), &["EXPOSE 22 23"]).unwrap();
    assert_eq!(c["ExposedPorts"], json!({"22/tcp": {}, "23/tcp": {}}));
    for bad in [
        "EXPOSE",
        "EXPOSE 80/icmp",
        "EXPOSE http",
        "EXPOSE 70000",
        "EXPOSE 9-8",
        "EXPOSE 1:80",
        "EXPOSE 80/tcp/x",
    ] {
        assert!(apply(json!({}), &[bad]).is_err(), "{bad}");
    }
}

#[test]
fn label() {
    let c = apply(
        json!({"Labels": {"z": "old", "a": "1"}}),
        &[r#"LABEL z=new "my key"="a b" k=v\ w e="""#],
    )
    .unwrap();
    assert_eq!(
        c["Labels"],
        json!({"a": "1", "e": "", "k": "v w", "my key": "a b", "z": "new"})
    );
    assert_eq!(c["Labels"].as_object().unwrap().keys().next().unwrap(), "a");
    assert!(err(&["LABEL k v"]).contains("LABEL needs key=value"));
    assert!(err(&["LABEL"]).contains("at least one argument"));
    assert!(err(&["LABEL =v"]).contains("blank"));
}

#[test]
fn onbuild() {
    let c = ok(&["ONBUILD RUN make  all", "onbuild COPY . /src"]);
    assert_eq!(c["OnBuild"], json!(["RUN make  all", "COPY . /src"]));
    assert!(err(&["ONBUILD ONBUILD RUN x"]).contains("chaining ONBUILD"));
    assert!(err(&["ONBUILD FROM x"]).contains("FROM isn't allowed"));
    assert!(err(&["ONBUILD maintainer me"]).contains("MAINTAINER isn't allowed"));
    assert!(err(&["ONBUILD"]).contains("at least one argument"));
}

#[test]
fn stopsignal() {
    for good in [
        "SIGTERM",
        "term",
        "SIGRTMIN+3",
        "RTMAX-1",
        "9",
        "64",
        "sigkill",
    ] {
        assert_eq!(ok(&[&format!("STOPSIGNAL {good}")])["StopSignal"], good);
    }
    for bad in [
        "STOPSIGNAL SIGFOO",
        "STOPSIGNAL 0",
        "STOPSIGNAL 65",
        "STOPSIGNAL -1",
        "STOPSIGNAL",
        "STOPSIGNAL RTMIN+16",
    ] {
        assert!(
            err(&[bad]).contains(if bad == "STOPSIGNAL" {
                "exactly one"
            } else {
                "invalid signal"
            }),
            "{bad}"
        );
    }
}

#[test]
fn user_and_workdir() {
    assert_eq!(ok(&["USER app:app"])["User"], "app:app");
    assert!(err(&["USER"]).contains("exactly one argument"));
    assert_eq!(ok(&["WORKDIR rel"])["WorkingDir"], "/rel");
    assert_eq!(ok(&["WORKDIR /a/./b/../c/"])["WorkingDir"], "/a/c");
    assert_eq!(
        ok(&["WORKDIR /a", "WORKDIR b", "WORKDIR ../../../c"])["WorkingDir"],
        "/c"
    );
    let c = apply(json!({"WorkingDir": "/srv"}), &["WORKDIR x//y"]).unwrap();
    assert_eq!(c["WorkingDir"], "/srv/x/y");
    assert!(err(&["WORKDIR"]).contains("exactly one argument"));
    assert!(err(&["WORKDIR $UNSET"]).contains("empty"));
}

#[test]
fn volume() {
    let c = ok(&[
        r#"VOLUME ["/data", "/logs"]"#,
        "VOLUME /a  /b",
        "VOLUME [/x",
    ]);
    assert_eq!(
        c["Volumes"],
        json!({"/a": {}, "/b": {}, "/data": {}, "/logs": {}, "[/x": {}})
    );
    assert!(err(&["VOLUME []"]).contains("at least one argument"));
    assert!(err(&["VOLUME"]).contains("at least one argument"));
    assert!(err(&[r#"VOLUME [" "]"#]).contains("empty string"));
    assert!(err(&["VOLUME [1]"]).contains("strings only"));
}

#[test]
fn healthcheck_forms() {
    assert_eq!(
        ok(&["HEALTHCHECK none"])["Healthcheck"],
        json!({"Test": ["NONE"]})
    );
    let c = ok(&["HEALTHCHECK --interval=1m30s --timeout=500ms --start-period=0 --start-interval=1.5s --retries=3 CMD curl -f http://x/ || exit 1"]);
    assert_eq!(
        c["Healthcheck"],
        json!({"Test": ["CMD-SHELL", "curl -f http://x/ || exit 1"], "Interval": 90_000_000_000i64,
               "Timeout": 500_000_000, "StartInterval": 1_500_000_000, "Retries": 3})
    );
    let c = ok(&[r#"HEALTHCHECK cmd ["/bin/check", "--deep"]"#]);
    assert_eq!(
        c["Healthcheck"],
        json!({"Test": ["CMD", "/bin/check", "--deep"]})
    );
    for (bad, why) in [
        ("HEALTHCHECK", "at least one argument"),
        ("HEALTHCHECK CMD", "missing command"),
        ("HEALTHCHECK CMD []", "missing command"),
        ("HEALTHCHECK NONE x", "no arguments"),
        ("HEALTHCHECK --interval=5s NONE", "no arguments"),
        ("HEALTHCHECK --foo=1 CMD x", "unknown flag: foo"),
        ("HEALTHCHECK --interval 5s CMD x", "missing a value"),
        (
            "HEALTHCHECK --retries=1 --retries=2 CMD x",
            "duplicate flag",
        ),
        ("HEALTHCHECK --retries=-1 CMD x", "negative"),
        ("HEALTHCHECK --retries=x CMD x", "--retries"),
        ("HEALTHCHECK --interval=10 CMD x", "missing unit"),
        ("HEALTHCHECK --interval=10us CMD x", "less than 1ms"),
        ("HEALTHCHECK CHECK x", "try CMD"),
    ] {
        let e = err(&[bad]);
        assert!(e.contains(why), "{bad}: {e}");
    }
}

#[test]
fn durations() {
    assert_eq!(
        parse_duration("1h2m3s4ms5us6ns").unwrap(),
        3_723_004_005_006
    );
    assert_eq!(parse_duration("1.5m").unwrap(), 90_000_000_000);
    assert_eq!(parse_duration(".5s").unwrap(), 500_000_000);
    assert_eq!(parse_duration("-2s").unwrap(), -2_000_000_000);
    assert_eq!(parse_duration("0").unwrap(), 0);
    for bad in ["", "s", "1x", "1", ".s", "99999999999999999999h"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}

#[test]
fn flags_and_words() {
    let (flags, rest) = extract_flags(r#"--a=1 --b="x y" -- --not-a-flag"#);
    assert_eq!(flags, ["--a=1", "--b=x y"]);
    assert_eq!(rest, " --not-a-flag");
    assert_eq!(extract_flags("CMD --x").1, "CMD --x");
    assert_eq!(
        parse_words(r#"a="b c" d\ e  'f g'"#),
        [r#"a="b c""#, r"d\ e", "'f g'"]
    );
}
