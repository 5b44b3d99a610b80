//! The spec parser at its boundary: good specs normalise to a snapshot and survive a round trip
//! through their normalised form; bad specs are refused with a snapshot one-line error.
//!
//! Regenerate the snapshots with `INSTA_UPDATE=always cargo test -p ward-spec`, then review the
//! changed `.snap` files.

use serde_json::{json, Map, Value};
use ward_spec::{diff_normalized, parse_documents, parse_value, units, SpecError};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Expect {
    Valid,
    Refused,
}

/// Parses `input`, checks the invariants of the outcome and snapshots it as `case_name`: the
/// normalised documents as JSON for a valid spec, the error line for a refused one.
fn check(case_name: &str, input: &str, expect: Expect) {
    let rendered = match (parse_documents(input), expect) {
        (Ok(specs), Expect::Valid) => {
            for spec in &specs {
                let normalized = spec.to_normalized_json();
                let reparsed = parse_value(normalized.clone()).unwrap_or_else(|error| {
                    panic!("{case_name}: the normalised form is refused: {error}")
                });
                assert_eq!(
                    &reparsed, spec,
                    "{case_name}: the round trip through the normalised form changed the spec"
                );
                assert_eq!(
                    reparsed.to_normalized_json(),
                    normalized,
                    "{case_name}: normalising twice differs"
                );
            }
            let documents: Vec<Value> = specs
                .iter()
                .map(|spec| sorted_keys(spec.to_normalized_json()))
                .collect();
            let shown = if documents.len() == 1 {
                documents[0].clone()
            } else {
                Value::Array(documents)
            };
            serde_json::to_string_pretty(&shown).expect("json values always serialise")
        }
        (Err(error), Expect::Refused) => {
            assert_one_line_naming_the_field(case_name, &error);
            error.to_string()
        }
        (Ok(specs), Expect::Refused) => {
            panic!("{case_name}: expected an error, but it parsed: {specs:?}")
        }
        (Err(error), Expect::Valid) => {
            panic!("{case_name}: expected a valid spec, but got: {error}")
        }
    };
    insta::with_settings!({ description => input, omit_expression => true }, {
        insta::assert_snapshot!(case_name, rendered);
    });
}

fn assert_one_line_naming_the_field(case_name: &str, error: &SpecError) {
    let line = error.to_string();
    assert!(
        !line.contains('\n'),
        "{case_name}: the error spans lines: {line:?}"
    );
    assert!(
        !line.ends_with('.'),
        "{case_name}: the error ends with a period: {line:?}"
    );
    assert!(!line.trim().is_empty(), "{case_name}: the error is empty");
    let without_document = match error.document() {
        Some(document) => line
            .strip_prefix(&format!("document {document}: "))
            .unwrap_or_else(|| panic!("{case_name}: no document prefix: {line:?}")),
        None => line.as_str(),
    };
    if error.field().is_empty() {
        assert!(
            without_document.starts_with("invalid YAML")
                || without_document.starts_with("invalid JSON")
                || without_document.starts_with("no workload")
                || without_document.starts_with("expected a workload"),
            "{case_name}: an error without a field must be about the file as a whole: {line:?}"
        );
    } else {
        assert!(
            without_document.starts_with(&format!("{}: ", error.field())),
            "{case_name}: the error does not start with its field path {:?}: {line:?}",
            error.field()
        );
    }
    let first_character = error.message().chars().next().unwrap_or(' ');
    assert!(
        !first_character.is_uppercase(),
        "{case_name}: the reason is not lower-case: {line:?}"
    );
}

/// Rebuilds objects with sorted keys so snapshots do not depend on serde_json's map order.
fn sorted_keys(value: Value) -> Value {
    match value {
        Value::Object(object) => {
            let mut entries: Vec<(String, Value)> = object.into_iter().collect();
            entries.sort_by(|left, right| left.0.cmp(&right.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(key, value)| (key, sorted_keys(value)))
                    .collect::<Map<_, _>>(),
            )
        }
        Value::Array(elements) => Value::Array(elements.into_iter().map(sorted_keys).collect()),
        other => other,
    }
}

const CONTRACT_EXAMPLE_AS_CONTAINER: &str = r#"
name: web                 # required
kind: container
image: nginx:1.27
command: [python3, -m, http.server, "8000"]
workdir: /srv
env: {GREETING: hello}
resources:
  cpu: 1.5
  memory: 512MiB
  pids: 512
  gpu: 0
  disk: 10GiB
ports: ["8080:8000", "5353:53/udp"]
volumes: ["data:/var/lib/data", "/srv/site:/usr/share/nginx/html:ro"]
network: bridge
restart: on-failure
health:
  http: {port: 8000, path: /}
  interval: 10s
  timeout: 2s
  retries: 3
replicas: 1
autoscale: {min: 1, max: 4, cpu: 70}
labels: {team: web}
"#;

const GOOD_SPECS: &[(&str, &str)] = &[
    ("good_contract_example_as_container", CONTRACT_EXAMPLE_AS_CONTAINER),
    ("good_minimal_process", "name: sleeper\ncommand: [sleep, \"60\"]\n"),
    ("good_health_with_a_start_period", "name: slow\ncommand: [sleep, \"60\"]\nhealth: {tcp: 80, start_period: 1m}\n"),
    ("good_minimal_container_gets_image_defaults", "name: web\nimage: nginx\n"),
    (
        "good_secrets_as_files_and_variables",
        "name: api\ncommand: [./api]\nsecrets:\n  - db-password\n  - {name: api-token, env: API_TOKEN}\n  - {name: tls-key, file: /etc/tls/key.pem, env: TLS_KEY}\n",
    ),
    ("good_container_publishes_every_exposed_port", "name: web\nimage: nginx\npublish_all: true\nports: [\"8080:80\"]\n"),
    ("good_kind_defaults_to_container_with_image", "name: db\nimage: postgres:16\nenv: {POSTGRES_PASSWORD: secret}\n"),
    ("good_command_string_runs_through_shell", "name: echo\ncommand: echo \"$HOME\" && sleep 5\n"),
    ("good_command_numbers_become_strings", "name: http\ncommand: [python3, -m, http.server, 8000, true, 1.5]\n"),
    (
        "good_env_values_become_strings",
        "name: env\ncommand: [env]\nenv:\n  PORT: 8080\n  DEBUG: true\n  RATIO: 0.5\n  EMPTY: \"\"\n  URL: postgres://u:p@db/x?a=b\n",
    ),
    ("good_env_list_form", "name: env\ncommand: [env]\nenv: [\"A=1\", \"B=x=y\", \"EMPTY=\"]\n"),
    (
        "good_resources_with_units",
        "name: sized\ncommand: [sleep, \"1\"]\nresources: {cpu: \"500m\", memory: 1.5GiB, disk: 10G, pids: 512, gpu: 1}\n",
    ),
    (
        "good_resources_plain_bytes_and_lower_case_units",
        "name: sized\ncommand: [sleep, \"1\"]\nresources: {cpu: 2, memory: 4194304, disk: \"64 mb\"}\n",
    ),
    ("good_cpu_as_decimal_string", "name: cpu\ncommand: [sleep, \"1\"]\nresources: {cpu: \"0.25\", memory: 1g}\n"),
    (
        "good_ports_in_every_form",
        "name: ports\ncommand: [sleep, \"1\"]\nports:\n  - \"8080:8000\"\n  - \"5353:53/udp\"\n  - \"5353:53/tcp\"\n  - \"9000\"\n  - 7000\n  - {host: 8443, port: 443}\n  - {port: 6000, protocol: udp}\n",
    ),
    (
        "good_volumes_in_every_form",
        "name: volumes\ncommand: [sleep, \"1\"]\nvolumes:\n  - data:/var/lib/data\n  - /srv/site:/usr/share/nginx/html:ro\n  - /etc/hosts:/etc/hosts:rw\n  - {source: cache, target: /cache}\n  - {source: /srv/conf, target: /conf, read_only: true}\n",
    ),
    ("good_host_network_without_ports", "name: host\ncommand: [sleep, \"1\"]\nnetwork: host\n"),
    ("good_none_network", "name: isolated\ncommand: [sleep, \"1\"]\nnetwork: none\n"),
    (
        "good_port_on_one_host_address_and_host_user_ids",
        "name: admin\ncommand: [sleep, \"1\"]\nuserns: host\nports: [\"127.0.0.1:8080:80\", {host: 9090, port: 90, host_ip: 10.0.0.5}]\n",
    ),
    (
        "good_restart_policies_and_docker_spellings",
        "name: r1\ncommand: [\"true\"]\nrestart: \"no\"\n---\nname: r2\ncommand: [\"true\"]\nrestart: unless-stopped\n---\nname: r3\ncommand: [\"true\"]\nrestart: on-failure:5\n---\nname: r4\ncommand: [\"true\"]\nrestart: {policy: on-failure, max_retries: 3}\n---\nname: r5\ncommand: [\"true\"]\nrestart: {policy: always}\n---\nname: r6\ncommand: [\"true\"]\nrestart: never\n",
    ),
    ("good_health_http_default_path", "name: web\nimage: nginx\nhealth:\n  http: {port: 80}\n"),
    ("good_health_http_string", "name: web\nimage: nginx\nhealth: {http: 8000/healthz?full=1}\n"),
    (
        "good_health_tcp_bare_port_with_timings",
        "name: db\nimage: postgres:16\nhealth:\n  tcp: 5432\n  interval: 1m30s\n  timeout: 500ms\n  retries: 5\n",
    ),
    ("good_health_exec_string", "name: db\nimage: postgres:16\nhealth: {exec: pg_isready -U postgres, interval: 5}\n"),
    ("good_health_exec_list", "name: db\nimage: postgres:16\nhealth: {exec: [pg_isready, -U, postgres], timeout: 1.5s}\n"),
    (
        "good_health_normalized_form",
        "name: web\nimage: nginx\nhealth: {kind: http, port: 80, path: /ready, command: null, interval_ms: 2500, timeout_ms: 1000, retries: 2}\n",
    ),
    ("good_replicas_zero", "name: idle\ncommand: [sleep, \"1\"]\nreplicas: 0\n"),
    (
        "good_autoscale_percent_string",
        "name: scaled\ncommand: [sleep, \"1\"]\nresources: {cpu: 1}\nautoscale: {min: 2, max: 10, cpu: \"70%\"}\n",
    ),
    ("good_autoscale_default_min", "name: scaled\ncommand: [sleep, \"1\"]\nautoscale: {max: 3, cpu: 55.5}\n"),
    ("good_heal_shorthand", "name: api\ncommand: [sleep, \"1\"]\nheal: off\n"),
    (
        "good_heal_auto_with_memory_max",
        "name: api\ncommand: [sleep, \"1\"]\nresources: {memory: 64MiB}\nheal: {policy: auto, memory_max: 1GiB}\n",
    ),
    (
        "good_heal_normalized_form",
        "name: api\ncommand: [sleep, \"1\"]\nresources: {memory: 67108864}\nheal: {policy: suggest, memory_max: 134217728}\n",
    ),
    (
        "good_labels_with_dotted_keys",
        "name: labelled\ncommand: [sleep, \"1\"]\nlabels: {team: web, app.kubernetes.io/name: shop, tier: 1}\n",
    ),
    (
        "good_multi_document_yaml_skips_empty_documents",
        "# web and worker\n---\nname: web\nimage: nginx:1.27\nports: [\"8080:80\"]\n---\n---\n# the worker\nname: worker\ncommand: [python3, worker.py]\nworkdir: /srv/app\n---\n",
    ),
    (
        "good_yaml_list_of_workloads",
        "- name: web\n  image: nginx\n- name: worker\n  command: [sleep, \"1\"]\n",
    ),
    (
        "good_json_object",
        r#"{"name": "api", "image": "ghcr.io/acme/api:v2", "ports": ["8080:8080"], "resources": {"memory": "256MiB"}}"#,
    ),
    (
        "good_json_array",
        r#"[{"name": "one", "command": ["sleep", "1"]}, {"name": "two", "command": ["sleep", "2"], "replicas": 3}]"#,
    ),
    (
        "good_normalized_json_with_status_reapplied",
        r#"{"name": "web", "kind": "container", "image": "docker.io/library/nginx:latest", "command": null,
            "workdir": null, "env": {}, "resources": {"cpu": null, "memory": 268435456, "pids": null, "gpu": null, "disk": null},
            "ports": [{"host": 8080, "port": 80, "protocol": "tcp"}], "volumes": [], "network": "bridge",
            "restart": {"policy": "on-failure", "max_retries": null}, "health": null, "replicas": 1, "autoscale": null,
            "labels": {}, "status": {"state": "running", "restarts": 0, "exit_code": null, "pid": 4242}}"#,
    ),
    ("good_vm_keeps_image_as_given", "name: vm1\nkind: vm\nimage: /var/lib/images/Debian-12.qcow2\nresources: {disk: 20GiB, memory: 2G, cpu: 2}\n"),
    ("good_wasm_with_url_and_args", "name: hello\nkind: wasm\nimage: https://example.com/Hello.wasm\ncommand: [hello, --loud]\n"),
    ("good_yaml_flow_mapping_that_looks_like_json", "{name: flow, command: [sleep, 1]}\n"),
    (
        "good_yaml_anchors_and_merge_keys",
        "name: merged\ncommand: [sleep, \"1\"]\nenv:\n  <<: &common {A: \"1\", B: \"2\"}\n  B: \"3\"\nlabels: *common\n",
    ),
    (
        "good_nulls_mean_unset",
        "name: nulls\nkind: ~\ncommand: [sleep, \"1\"]\nworkdir: null\nenv: ~\nports: null\nvolumes:\nhealth: null\nrestart: null\nreplicas: null\nresources: {cpu: null, memory: null}\n",
    ),
    (
        "good_docker_image_normalization",
        "name: i1\nimage: nginx\n---\nname: i2\nimage: postgres:16\n---\nname: i3\nimage: user/app\n---\nname: i4\nimage: ghcr.io/o/r\n---\nname: i5\nimage: localhost:5000/x:1\n---\nname: i6\nimage: nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n---\nname: i7\nimage: index.docker.io/library/redis:7-alpine\n",
    ),
];

const BAD_SPECS: &[(&str, &str)] = &[
    ("bad_yaml_unclosed_list", "name: web\ncommand: [sleep, \"60\"\nimage: x\n"),
    ("bad_yaml_mapping_inside_scalar", "name: web\n  command: sleep\n kind: process\n"),
    ("bad_yaml_duplicate_key", "name: web\nname: api\ncommand: [sleep, \"1\"]\n"),
    ("bad_yaml_unknown_anchor", "name: web\ncommand: *missing\n"),
    ("bad_json_missing_comma", "{\"name\": \"web\"\n \"command\": [\"sleep\"]}\n"),
    ("bad_empty_file", ""),
    ("bad_only_comments_and_separators", "# nothing here\n---\n---\n"),
    ("bad_json_empty_array", "[]"),
    ("bad_top_level_list_of_names", "- web\n- api\n"),
    ("bad_scalar_document", "hello\n"),
    ("bad_secret_name", "name: api\ncommand: [./api]\nsecrets: [\"Bad Name\"]\n"),
    ("bad_secret_variable_clashes_with_env", "name: api\ncommand: [./api]\nenv: {TOKEN: x}\nsecrets: [{name: api-token, env: TOKEN}]\n"),
    ("bad_secret_file_clashes_with_a_volume", "name: api\ncommand: [./api]\nvolumes: [\"data:/run/secrets/db\"]\nsecrets: [db]\n"),
    ("bad_secret_relative_file", "name: api\ncommand: [./api]\nsecrets: [{name: db, file: run/db}]\n"),
    ("bad_secret_unknown_field", "name: api\ncommand: [./api]\nsecrets: [{name: db, path: /x}]\n"),
    ("bad_publish_all_on_a_process", "name: web\ncommand: [sleep, \"1\"]\npublish_all: true\n"),
    ("bad_publish_all_without_a_bridge", "name: web\nimage: nginx\nnetwork: none\npublish_all: true\n"),
    ("bad_publish_all_not_a_boolean", "name: web\nimage: nginx\npublish_all: \"yes\"\n"),
    ("bad_unknown_top_level_field_did_you_mean", "name: web\nimagee: nginx\n"),
    ("bad_unknown_top_level_field_without_suggestion", "name: web\ncommand: [sleep, \"1\"]\nfrobnicate: 1\n"),
    ("bad_memory_at_top_level", "name: web\ncommand: [sleep, \"1\"]\nmemory: 1G\n"),
    ("bad_docker_compose_environment", "name: web\ncommand: [sleep, \"1\"]\nenvironment: {A: \"1\"}\n"),
    ("bad_unknown_nested_field", "name: web\ncommand: [sleep, \"1\"]\nresources: {memroy: 1G}\n"),
    ("bad_unknown_field_in_health_http", "name: web\nimage: nginx\nhealth: {http: {port: 80, pth: /}}\n"),
    ("bad_unknown_field_in_port_object", "name: web\nimage: nginx\nports: [{host: 80, port: 80, proto: tcp}]\n"),
    ("bad_missing_name", "command: [sleep, \"1\"]\n"),
    ("bad_name_upper_case", "name: Web\ncommand: [sleep, \"1\"]\n"),
    ("bad_name_trailing_dash", "name: web-\ncommand: [sleep, \"1\"]\n"),
    ("bad_name_too_long", "name: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\ncommand: [sleep, \"1\"]\n"),
    ("bad_name_not_a_string", "name: 123\ncommand: [sleep, \"1\"]\n"),
    ("bad_missing_command", "name: web\n"),
    ("bad_empty_command_list", "name: web\ncommand: []\n"),
    ("bad_empty_program", "name: web\ncommand: [\"\", x]\n"),
    ("bad_command_argument_is_a_list", "name: web\ncommand: [sleep, [1]]\n"),
    ("bad_image_on_process", "name: web\nkind: process\nimage: nginx\ncommand: [nginx]\n"),
    ("bad_contract_example_literally_process_with_image", CONTRACT_EXAMPLE_LITERAL),
    ("bad_container_without_image", "name: web\nkind: container\n"),
    ("bad_vm_without_image", "name: vm1\nkind: vm\n"),
    ("bad_unknown_kind", "name: web\nkind: docker\nimage: nginx\n"),
    ("bad_kind_not_a_string", "name: web\nkind: 1\n"),
    ("bad_image_upper_case", "name: web\nimage: Nginx\n"),
    ("bad_image_empty_tag", "name: web\nimage: \"nginx:\"\n"),
    ("bad_image_short_digest", "name: web\nimage: nginx@sha256:abc\n"),
    ("bad_workdir_relative", "name: web\ncommand: [sleep, \"1\"]\nworkdir: srv\n"),
    ("bad_env_null_value", "name: web\ncommand: [sleep, \"1\"]\nenv: {GREETING: }\n"),
    ("bad_env_odd_key_without_value", "name: web\ncommand: [sleep, \"1\"]\nenv: {\"MY VAR\": }\n"),
    ("bad_env_list_without_equals", "name: web\ncommand: [sleep, \"1\"]\nenv: [GREETING]\n"),
    ("bad_env_list_twice", "name: web\ncommand: [sleep, \"1\"]\nenv: [A=1, A=2]\n"),
    ("bad_env_non_string_key", "name: web\ncommand: [sleep, \"1\"]\nenv: {1: x}\n"),
    ("bad_size_unit", "name: web\ncommand: [sleep, \"1\"]\nresources: {memory: 12XB}\n"),
    ("bad_memory_too_small", "name: web\ncommand: [sleep, \"1\"]\nresources: {memory: 1MiB}\n"),
    ("bad_memory_fractional_bytes", "name: web\ncommand: [sleep, \"1\"]\nresources: {memory: 1.5}\n"),
    ("bad_disk_zero", "name: vm1\nkind: vm\nimage: /i.qcow2\nresources: {disk: 0}\n"),
    ("bad_negative_cpu", "name: web\ncommand: [sleep, \"1\"]\nresources: {cpu: -1}\n"),
    ("bad_cpu_too_many", "name: web\ncommand: [sleep, \"1\"]\nresources: {cpu: 2000}\n"),
    ("bad_cpu_word", "name: web\ncommand: [sleep, \"1\"]\nresources: {cpu: lots}\n"),
    ("bad_pids_zero", "name: web\ncommand: [sleep, \"1\"]\nresources: {pids: 0}\n"),
    ("bad_memory_too_large", "name: web\ncommand: [sleep, \"1\"]\nreplicas: 4\nresources: {memory: 4194304T}\n"),
    ("bad_pids_too_many", "name: web\ncommand: [sleep, \"1\"]\nresources: {pids: 99999999999}\n"),
    ("bad_gpu_negative", "name: web\ncommand: [sleep, \"1\"]\nresources: {gpu: -1}\n"),
    ("bad_resources_not_a_mapping", "name: web\ncommand: [sleep, \"1\"]\nresources: 1G\n"),
    ("bad_port_out_of_range", "name: web\nimage: nginx\nports: [\"8080:70000\"]\n"),
    ("bad_port_zero", "name: web\nimage: nginx\nports: [0]\n"),
    ("bad_port_protocol", "name: web\nimage: nginx\nports: [\"8080:80/sctp\"]\n"),
    ("bad_port_host_address_not_ipv4", "name: web\nimage: nginx\nports: [\"localhost:8080:80\"]\n"),
    ("bad_port_host_address_unspecified", "name: web\nimage: nginx\nports: [{host: 8080, port: 80, host_ip: 0.0.0.0}]\n"),
    ("bad_userns", "name: web\nimage: nginx\nuserns: keep-id\n"),
    ("bad_duplicate_port", "name: web\nimage: nginx\nports: [\"8080:80\", \"8443:443\", {host: 8080, port: 81}]\n"),
    ("bad_ports_not_a_list", "name: web\nimage: nginx\nports: \"8080:80\"\n"),
    ("bad_volume_relative_source", "name: web\nimage: nginx\nvolumes: [\"./data:/data\"]\n"),
    ("bad_volume_relative_target", "name: web\nimage: nginx\nvolumes: [\"data:data\"]\n"),
    ("bad_volume_mode", "name: web\nimage: nginx\nvolumes: [\"data:/data:rx\"]\n"),
    ("bad_volume_over_root", "name: web\nimage: nginx\nvolumes: [\"data:/\"]\n"),
    ("bad_volume_dot_dot", "name: web\nimage: nginx\nvolumes: [\"/srv/../etc:/etc\"]\n"),
    ("bad_duplicate_volume_target", "name: web\nimage: nginx\nvolumes: [\"a:/data\", {source: b, target: /data/}]\n"),
    ("bad_volume_object_missing_target", "name: web\nimage: nginx\nvolumes: [{source: data}]\n"),
    ("bad_unknown_network", "name: web\nimage: nginx\nnetwork: overlay\n"),
    ("bad_host_network_with_ports", "name: web\nimage: nginx\nnetwork: host\nports: [\"8080:80\"]\n"),
    ("bad_none_network_with_ports", "name: web\nimage: nginx\nnetwork: none\nports: [\"8080:80\"]\n"),
    ("bad_restart_policy", "name: web\nimage: nginx\nrestart: sometimes\n"),
    ("bad_restart_max_retries_with_always", "name: web\nimage: nginx\nrestart: {policy: always, max_retries: 3}\n"),
    ("bad_two_health_probes", "name: web\nimage: nginx\nhealth: {http: {port: 80}, tcp: 80}\n"),
    ("bad_health_without_probe", "name: web\nimage: nginx\nhealth: {interval: 5s}\n"),
    ("bad_health_kind_and_probe", "name: web\nimage: nginx\nhealth: {kind: tcp, port: 80, http: 80}\n"),
    ("bad_health_port_outside_probe", "name: web\nimage: nginx\nhealth: {http: {port: 80}, port: 80}\n"),
    ("bad_health_duration", "name: web\nimage: nginx\nhealth: {tcp: 80, interval: 10 parsecs}\n"),
    ("bad_health_zero_duration", "name: web\nimage: nginx\nhealth: {tcp: 80, timeout: 0s}\n"),
    ("bad_health_interval_twice", "name: web\nimage: nginx\nhealth: {tcp: 80, interval: 5s, interval_ms: 5000}\n"),
    ("bad_health_retries_zero", "name: web\nimage: nginx\nhealth: {tcp: 80, retries: 0}\n"),
    ("bad_health_http_path_without_slash", "name: web\nimage: nginx\nhealth: {http: {port: 80, path: healthz}}\n"),
    ("bad_health_normalized_exec_with_port", "name: web\nimage: nginx\nhealth: {kind: exec, command: [\"true\"], port: 80}\n"),
    ("bad_replicas_too_many", "name: web\nimage: nginx\nreplicas: 1001\n"),
    ("bad_replicas_negative", "name: web\nimage: nginx\nreplicas: -1\n"),
    ("bad_replicas_quoted", "name: web\nimage: nginx\nreplicas: \"3\"\n"),
    ("bad_autoscale_min_above_max", "name: web\nimage: nginx\nautoscale: {min: 5, max: 2, cpu: 70}\n"),
    ("bad_autoscale_cpu_above_100", "name: web\nimage: nginx\nautoscale: {min: 1, max: 2, cpu: 150%}\n"),
    ("bad_autoscale_missing_max", "name: web\nimage: nginx\nautoscale: {min: 1, cpu: 70}\n"),
    ("bad_heal_unknown_policy", "name: web\nimage: nginx\nheal: always\n"),
    ("bad_heal_memory_max_without_memory", "name: web\nimage: nginx\nheal: {policy: auto, memory_max: 1GiB}\n"),
    (
        "bad_heal_memory_max_below_memory",
        "name: web\nimage: nginx\nresources: {memory: 1GiB}\nheal: {policy: auto, memory_max: 512MiB}\n",
    ),
    ("bad_heal_unknown_field", "name: web\nimage: nginx\nheal: {policy: auto, max_memory: 1GiB}\n"),
    ("bad_labels_value_is_a_list", "name: web\nimage: nginx\nlabels: {team: [a, b]}\n"),
    ("bad_yaml_tag", "name: web\nimage: nginx\nenv: {TOKEN: !secret token}\n"),
    (
        "bad_second_document_size",
        "name: web\nimage: nginx\n---\nname: api\nimage: api\nresources: {memory: 12XB}\n",
    ),
    ("bad_duplicate_names_across_documents", "name: web\nimage: nginx\n---\nname: web\nimage: httpd\n"),
    ("bad_json_array_with_non_object", r#"[{"name": "one", "command": ["true"]}, "two"]"#),
    ("bad_json_unknown_field", r#"{"name": "api", "image": "api", "replica": 2}"#),
];

const CONTRACT_EXAMPLE_LITERAL: &str = r#"
name: web
kind: process
image: nginx:1.27
command: [python3, -m, http.server, "8000"]
"#;

#[test]
fn good_specs_normalise_and_round_trip() {
    assert!(GOOD_SPECS.len() >= 25);
    for (case_name, input) in GOOD_SPECS {
        check(case_name, input, Expect::Valid);
    }
}

#[test]
fn bad_specs_are_refused_with_one_line_naming_the_field() {
    assert!(BAD_SPECS.len() >= 40);
    for (case_name, input) in BAD_SPECS {
        check(case_name, input, Expect::Refused);
    }
}

#[test]
fn api_bodies_parse_with_the_same_rules() {
    let body = json!({"name": "api", "image": "api:v1", "resources": {"memory": "64MiB"}});
    let spec = parse_value(body).expect("a valid body");
    assert_eq!(spec.image.as_deref(), Some("docker.io/library/api:v1"));
    assert_eq!(spec.resources.memory, Some(64 * 1024 * 1024));

    let error = parse_value(json!({"name": "api", "image": "api", "resources": {"memroy": "1G"}}))
        .expect_err("an unknown field");
    assert_eq!(
        error.to_string(),
        "resources.memroy: unknown field; did you mean `memory`?"
    );
    assert_eq!(error.field(), "resources.memroy");
    assert_eq!(error.document(), None);

    let error = parse_value(json!([{"name": "api"}])).expect_err("a list is not one workload");
    assert_eq!(error.field(), "");
}

#[test]
fn errors_name_the_document_only_when_the_file_has_several() {
    let single = parse_documents("name: web\nimage: nginx\nresources: {memory: 12XB}\n")
        .expect_err("bad size");
    assert_eq!(single.document(), None);
    let multiple = parse_documents(
        "name: a\nimage: nginx\n---\nname: b\nimage: nginx\nresources: {memory: 12XB}\n",
    )
    .expect_err("bad size");
    assert_eq!(multiple.document(), Some(2));
    assert_eq!(multiple.field(), "resources.memory");
    assert_eq!(
        multiple.to_string(),
        "document 2: resources.memory: invalid size \"12XB\": use a number with an optional unit, like 512MiB or 2G"
    );
}

#[test]
fn dry_run_diff_lists_changed_leaves() {
    let old =
        parse_documents(CONTRACT_EXAMPLE_AS_CONTAINER).expect("valid")[0].to_normalized_json();
    let changed = CONTRACT_EXAMPLE_AS_CONTAINER
        .replace("memory: 512MiB", "memory: 1GiB")
        .replace(
            "env: {GREETING: hello}",
            "env: {GREETING: hi, EXTRA: \"1\"}",
        )
        .replace("\"5353:53/udp\"", "\"5354:53/udp\"")
        .replace("labels: {team: web}", "labels: {}")
        .replace("  retries: 3", "  retries: 4");
    let new = parse_documents(&changed).expect("valid")[0].to_normalized_json();
    let rendered: Vec<String> = diff_normalized(&old, &new)
        .into_iter()
        .map(|change| {
            let show = |value: Option<Value>| {
                value.map_or("(absent)".to_string(), |value| value.to_string())
            };
            format!(
                "{}: {} -> {}",
                change.path,
                show(change.old),
                show(change.new)
            )
        })
        .collect();
    insta::assert_snapshot!("dry_run_diff", rendered.join("\n"));
    assert!(diff_normalized(&old, &old).is_empty());
}

#[test]
fn unit_helpers_for_cli_flags() {
    let mut lines = Vec::new();
    for text in [
        "1024",
        "512MiB",
        "2G",
        "1.5 GiB",
        "64 mb",
        "1kb",
        "0.5K",
        "1T",
        "12XB",
        "",
        "1.2.3G",
        "-1M",
        "99999999999T",
    ] {
        lines.push(format!(
            "parse_size({text:?}) = {:?}",
            units::parse_size(text)
        ));
    }
    for bytes in [
        0,
        512,
        1024,
        268_435_456,
        1_610_612_736,
        123_456_789,
        1_073_741_823,
        5 << 40,
    ] {
        lines.push(format!(
            "format_size({bytes}) = {:?}",
            units::format_size(bytes)
        ));
    }
    for text in [
        "1.5", "2", "500m", "0.001", "0", "-1", "1025", "1.5m", "m", "abc", "1e3",
    ] {
        lines.push(format!(
            "parse_cpu({text:?}) = {:?}",
            units::parse_cpu(text)
        ));
    }
    for text in [
        "10s",
        "500ms",
        "1m30s",
        "1.5s",
        "30",
        "0",
        "ten",
        "10 parsecs",
    ] {
        lines.push(format!(
            "parse_duration({text:?}) = {:?}",
            units::parse_duration(text)
        ));
    }
    for text in [
        "8080:80",
        "5353:53/udp",
        "9000",
        "9000/udp",
        "0:80",
        "80:65536",
        "a:80",
        "1.2.3.4:80:80",
        "80/http",
    ] {
        lines.push(format!(
            "parse_port_mapping({text:?}) = {:?}",
            units::parse_port_mapping(text)
        ));
    }
    for text in [
        "data:/var/lib/data",
        "/srv:/srv:ro",
        "/srv:/srv:rw",
        "Data:/x",
        "data",
        "data:/x:rx",
        "/a/../b:/x",
    ] {
        lines.push(format!(
            "parse_volume({text:?}) = {:?}",
            units::parse_volume(text)
        ));
    }
    for text in ["8000", "8000/healthz", "8000/", "x/healthz", "8000/a b"] {
        lines.push(format!(
            "parse_http_probe({text:?}) = {:?}",
            units::parse_http_probe(text)
        ));
    }
    for text in [
        "no",
        "never",
        "on-failure",
        "on-failure:3",
        "on-failure:x",
        "always",
        "unless-stopped",
        "maybe",
    ] {
        lines.push(format!(
            "parse_restart({text:?}) = {:?}",
            units::parse_restart(text)
        ));
    }
    for text in ["GREETING=hello", "EMPTY=", "A=b=c", "=x", "NOEQUALS"] {
        lines.push(format!(
            "parse_env_assignment({text:?}) = {:?}",
            units::parse_env_assignment(text)
        ));
    }
    for text in [
        "web", "a", "web-1", "1web", "Web", "-web", "web-", "web_1", "",
    ] {
        lines.push(format!(
            "validate_name({text:?}) = {:?}",
            ward_spec::validate_name(text)
        ));
    }
    insta::assert_snapshot!("unit_helpers", lines.join("\n"));
}

#[test]
fn docker_image_normalization_table() {
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let references = [
        "nginx".to_string(),
        "nginx:1.27".to_string(),
        "postgres:16".to_string(),
        "user/app".to_string(),
        "user/app:v1".to_string(),
        "ghcr.io/o/r".to_string(),
        "ghcr.io/o/r:2.0".to_string(),
        "quay.io/org/sub/repo:v1.2_3-rc".to_string(),
        "localhost/x".to_string(),
        "localhost:5000/x:1".to_string(),
        "registry.example.com:8443/team/app".to_string(),
        "index.docker.io/library/redis".to_string(),
        "docker.io/library/nginx:latest".to_string(),
        format!("nginx@{digest}"),
        format!("nginx:1.27@{digest}"),
        format!("ghcr.io/o/r@{digest}"),
        "my_org/my-app.web:tag".to_string(),
        "Nginx".to_string(),
        "nginx:".to_string(),
        "nginx:-bad".to_string(),
        format!("nginx:{}", "t".repeat(129)),
        "nginx@sha256:ABC".to_string(),
        "nginx@md5:abc".to_string(),
        "/nginx".to_string(),
        "nginx/".to_string(),
        "a//b".to_string(),
        "ghcr.io:x/app".to_string(),
        String::new(),
    ];
    let lines: Vec<String> = references
        .iter()
        .map(|reference| format!("{reference:?} => {:?}", units::normalize_image(reference)))
        .collect();
    insta::assert_snapshot!("docker_image_normalization", lines.join("\n"));
}

/// A command and environment that `execve` refuses on every host (E2BIG) are refused by
/// name, before any start is tried; the same sizes just inside the limits pass.
#[test]
fn a_command_or_environment_past_what_the_kernel_takes_is_refused() {
    let mut env = serde_json::Map::new();
    for index in 0..100_000 {
        env.insert(format!("VARIABLE_{index}"), Value::String("x".repeat(20)));
    }
    let error = ward_spec::parse_value(serde_json::json!({
        "name": "e2big", "command": ["true"], "env": env,
    }))
    .expect_err("100,000 variables");
    assert_eq!(error.field(), "env");
    assert!(error.to_string().contains("100000 variables"), "{error}");

    let error = ward_spec::parse_value(serde_json::json!({
        "name": "e2big", "command": ["echo", "y".repeat(200_000)],
    }))
    .expect_err("an argument over 128 KiB");
    assert_eq!(error.field(), "command[1]");

    ward_spec::parse_value(serde_json::json!({
        "name": "fits", "command": ["echo", "y".repeat(100_000)], "env": {"A": "z".repeat(100_000)},
    }))
    .expect("sizes inside the limits");
}
