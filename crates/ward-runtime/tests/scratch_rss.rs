mod support;
use support::*;
use ward_runtime::Driver;
#[tokio::test]
async fn dump() {
    let Some(f) = fixture("dump") else { return };
    let key = f.key("t");
    let mut spec = spec("t", &["true"]);
    spec.resources.memory = Some(64<<20); spec.resources.pids = Some(100);
    let h = f.runtime.start(&key, &spec).await.unwrap();
    f.runtime.wait(&h).await.unwrap();
    std::fs::create_dir_all("/tmp/exp/b2").unwrap();
    std::fs::copy(f.runtime.instance_dir(&key).unwrap().join("config.json"), "/tmp/exp/b2/config.json").unwrap();
}
