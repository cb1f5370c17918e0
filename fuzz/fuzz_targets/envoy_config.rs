//! The Envoy-config generator over arbitrary valid configs: a config
//! built from a structure of rules, hosts, paths, backends and auth types
//! (kept only if it loads), then its resources, the static bootstrap as
//! YAML and as JSON, the xDS bootstrap and the xDS protos. Never a panic;
//! both bootstraps parse, have the bootstrap's top-level keys and say the
//! same thing; every generated regex compiles.
#![no_main]

use ingress_authz::config::yaml::{Node, Value as Yaml};
use ingress_authz::engine::Engine;
use ingress_authz::envoy::{self, Endpoint, Format, Options};
use ingress_authz_fuzz::envoy_input::{Config, config_text};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use serde_json::Value;

/// The YAML tree and the JSON tree of one bootstrap say the same.
fn same(y: &Node, j: &Value, at: &str) {
    match (&y.value, j) {
        (Yaml::Map(entries), Value::Object(map)) => {
            assert_eq!(entries.len(), map.len(), "{at}: keys");
            for (k, v) in entries {
                let Yaml::Scalar { text, .. } = &k.value else {
                    panic!("{at}: a key that is no scalar")
                };
                let jv = map
                    .get(text)
                    .unwrap_or_else(|| panic!("{at}: `{text}` only in YAML"));
                same(v, jv, &format!("{at}.{text}"));
            }
        }
        (Yaml::Seq(items), Value::Array(list)) => {
            assert_eq!(items.len(), list.len(), "{at}: items");
            for (i, (a, b)) in items.iter().zip(list).enumerate() {
                same(a, b, &format!("{at}[{i}]"));
            }
        }
        (Yaml::Scalar { text, .. }, Value::String(s)) => assert_eq!(text, s, "{at}"),
        (Yaml::Scalar { text, plain: true }, Value::Number(n)) => {
            assert_eq!(text, &n.to_string(), "{at}")
        }
        (Yaml::Scalar { text, plain: true }, Value::Bool(b)) => {
            assert_eq!(text, &b.to_string(), "{at}")
        }
        (_, Value::Null) => assert!(y.is_null(), "{at}"),
        (y, j) => panic!("{at}: YAML {y:?} vs JSON {j}"),
    }
}

thread_local! {
    /// Regexes already compiled once (most inputs repeat most of them).
    static CHECKED: std::cell::RefCell<std::collections::HashSet<String>> = Default::default();
}

/// Every `regex` string of the tree compiles.
fn regexes_compile(v: &Value) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if k == "regex"
                    && let Value::String(re) = v
                    && CHECKED.with(|c| !c.borrow().contains(re))
                {
                    regex::Regex::new(re).unwrap_or_else(|e| panic!("generated regex {re:?}: {e}"));
                    CHECKED.with(|c| {
                        let mut c = c.borrow_mut();
                        if c.len() > 10_000 {
                            c.clear();
                        }
                        c.insert(re.clone());
                    });
                }
                regexes_compile(v);
            }
        }
        Value::Array(l) => l.iter().for_each(regexes_compile),
        _ => {}
    }
}

/// One config: generated, loaded and, if it loads, turned into Envoy
/// config and checked. Whether it loaded.
fn run(config: &Config) -> bool {
    let text = config_text(config);
    let Ok(engine) = Engine::from_text(&text, "fuzz.yaml", &|_| None) else {
        return false;
    };
    let root = ingress_authz::config::yaml::parse(&text).expect("it loaded, so it parses");
    let resources = envoy::resources(&engine, &root);
    let options = Options {
        listen: envoy::listen_address(&engine.settings),
        admin: "127.0.0.1:9901".parse::<Endpoint>().unwrap(),
        authz: "ingress-authz:9001".parse::<Endpoint>().unwrap(),
        sidecar: "127.0.0.1:9002".parse::<Endpoint>().unwrap(),
    };
    let yaml = envoy::static_bootstrap(&resources, &options, "fuzz.yaml", Format::Yaml);
    let json = envoy::static_bootstrap(&resources, &options, "fuzz.yaml", Format::Json);
    let yaml_tree = ingress_authz::config::yaml::parse(&yaml)
        .unwrap_or_else(|e| panic!("the YAML bootstrap does not parse: {e}\n{yaml}"));
    let json_tree: Value = serde_json::from_str(&json).expect("the JSON bootstrap parses");
    for key in ["admin", "layered_runtime", "static_resources"] {
        assert!(json_tree.get(key).is_some(), "no `{key}`");
    }
    let statics = &json_tree["static_resources"];
    assert!(
        statics["listeners"]
            .as_array()
            .is_some_and(|l| l.len() == 1)
    );
    assert!(statics["clusters"].as_array().is_some_and(|c| c.len() >= 2));
    same(&yaml_tree, &json_tree, "");
    regexes_compile(&json_tree);

    // The xDS bootstrap depends on the options alone: checked once for
    // each listen address (it was a tenth of this target's time).
    if XDS_CHECKED.with(|c| c.borrow_mut().insert(options.listen.to_string())) {
        check_xds(&options);
    }

    let routes = envoy::proto::route_configuration(&resources);
    let _ = routes.encode_to_vec();
    for c in &resources.clusters {
        let _ = envoy::proto::cluster(c).encode_to_vec();
    }
    true
}

thread_local! {
    static XDS_CHECKED: std::cell::RefCell<std::collections::HashSet<String>> = Default::default();
}

/// The xDS bootstrap parses, as YAML and as JSON.
fn check_xds(options: &Options) {
    let xds = envoy::xds_bootstrap(options, "fuzz.yaml", Format::Yaml);
    ingress_authz::config::yaml::parse(&xds).expect("the xDS bootstrap parses");
    let xds_json: Value =
        serde_json::from_str(&envoy::xds_bootstrap(options, "fuzz.yaml", Format::Json)).unwrap();
    assert!(
        xds_json.get("dynamic_resources").is_some() || xds_json.get("static_resources").is_some()
    );
}

fuzz_target!(|config: Config| {
    run(&config);
});
