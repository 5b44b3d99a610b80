//! A deterministic fuzz run over the spec parser: thousands of mutated variants of good specs
//! must never panic, every refusal must be one line, and every accepted spec must survive the
//! round trip through its normalised form.

use ward_spec::{parse_documents, parse_value};

const SEED_DOCUMENTS: &[&str] = &[
    "name: web\nkind: container\nimage: nginx:1.27\ncommand: [python3, -m, http.server, \"8000\"]\nworkdir: /srv\nenv: {GREETING: hello}\nresources:\n  cpu: 1.5\n  memory: 512MiB\n  pids: 512\n  gpu: 0\n  disk: 10GiB\nports: [\"8080:8000\", \"5353:53/udp\"]\nvolumes: [\"data:/var/lib/data\", \"/srv/site:/usr/share/nginx/html:ro\"]\nnetwork: bridge\nrestart: on-failure\nhealth:\n  http: {port: 8000, path: /}\n  interval: 10s\n  timeout: 2s\n  retries: 3\nreplicas: 1\nautoscale: {min: 1, max: 4, cpu: 70}\nlabels: {team: web}\n",
    "name: sleeper\ncommand: [sleep, \"60\"]\nrestart: {policy: on-failure, max_retries: 3}\n---\nname: db\nimage: postgres:16\nhealth: {tcp: 5432, interval: 1m30s}\n",
    "name: env\ncommand: echo $A\nenv: [A=1, B=2]\nlabels: {\"a b\": \"x\\ty\", team: web}\nvolumes:\n  - {source: cache, target: /cache, read_only: true}\nports:\n  - {host: 8443, port: 443, protocol: tcp}\n",
    r#"[{"name": "one", "command": ["sleep", "1"], "resources": {"memory": 4194304, "cpu": "500m"}}, {"name": "two", "image": "ghcr.io/o/r@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "health": {"kind": "exec", "command": ["true"], "interval_ms": 500, "timeout_ms": 100, "retries": 1}}]"#,
];

/// Characters that matter to YAML, JSON and the value grammars.
const INTERESTING_BYTES: &[u8] = b" \n\t:-[]{},\"'\\#&*!|>%@`/.0123456789aZ_=~";

/// A tiny xorshift generator: deterministic, no dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: usize) -> usize {
        if bound == 0 {
            0
        } else {
            (self.next() % bound as u64) as usize
        }
    }
}

/// One random edit: delete, insert, replace or duplicate bytes, swap or drop lines, or cut the
/// text short. The seeds are ASCII and only ASCII is inserted, so the result stays UTF-8.
fn mutate(text: &str, random: &mut XorShift) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let position = random.below(bytes.len());
    match random.below(7) {
        0 if !bytes.is_empty() => {
            bytes.remove(position);
        }
        1 => bytes.insert(
            position,
            INTERESTING_BYTES[random.below(INTERESTING_BYTES.len())],
        ),
        2 if !bytes.is_empty() => {
            bytes[position] = INTERESTING_BYTES[random.below(INTERESTING_BYTES.len())]
        }
        3 if !bytes.is_empty() => {
            let end = (position + 1 + random.below(8)).min(bytes.len());
            let copied: Vec<u8> = bytes[position..end].to_vec();
            bytes.splice(position..position, copied);
        }
        4 => {
            let mut lines: Vec<&str> = text.split('\n').collect();
            let first = random.below(lines.len());
            let second = random.below(lines.len());
            lines.swap(first, second);
            return lines.join("\n");
        }
        5 => {
            let mut lines: Vec<&str> = text.split('\n').collect();
            lines.remove(random.below(lines.len()));
            return lines.join("\n");
        }
        _ => bytes.truncate(position),
    }
    String::from_utf8(bytes).expect("ascii edits keep the text utf-8")
}

#[test]
fn mutated_specs_never_panic_and_errors_stay_one_line() {
    let mut random = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut accepted = 0;
    let mut refused = 0;
    for iteration in 0..4000 {
        let seed = SEED_DOCUMENTS[iteration % SEED_DOCUMENTS.len()];
        let mut text = seed.to_string();
        for _ in 0..=random.below(4) {
            text = mutate(&text, &mut random);
        }
        match parse_documents(&text) {
            Ok(specs) => {
                accepted += 1;
                for spec in specs {
                    let reparsed = parse_value(spec.to_normalized_json()).unwrap_or_else(|error| {
                        panic!("normalised form refused ({error}) for input {text:?}")
                    });
                    assert_eq!(
                        reparsed, spec,
                        "round trip changed the spec for input {text:?}"
                    );
                }
            }
            Err(error) => {
                refused += 1;
                let line = error.to_string();
                assert!(
                    !line.contains('\n') && !line.ends_with('.'),
                    "bad error line {line:?} for input {text:?}"
                );
            }
        }
    }
    // Make sure the run explores both sides rather than only breaking the YAML.
    assert!(
        accepted > 200 && refused > 200,
        "accepted {accepted}, refused {refused}"
    );
}
