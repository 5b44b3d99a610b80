//! `Store` against real SQLite files: round trips, atomicity, migrations and kill -9.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::slice;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use ward_store::{
    EventRecord, ImageRecord, InstanceRecord, NewEvent, RevisionRecord, Store, StoreError,
    WorkloadRecord, SCHEMA_VERSION,
};

/// A store on a real file in a fresh temporary directory.
struct Fixture {
    directory: TempDir,
    store: Store,
}

impl Fixture {
    fn new() -> Fixture {
        let directory = tempfile::tempdir().expect("create temporary directory");
        let store = Store::open(&directory.path().join("ward.db")).expect("open store");
        Fixture { directory, store }
    }

    fn path(&self) -> PathBuf {
        self.directory.path().join("ward.db")
    }

    /// Closes the store, reopens the file as after a restart, and checks that
    /// it is intact and holds exactly `expected`.
    fn check(self, expected: Contents) {
        let path = self.path();
        drop(self.store);
        let store = Store::open(&path).expect("reopen store");
        store.check_integrity().expect("integrity check");
        assert_eq!(contents(&store), expected);
    }
}

/// Everything a store holds, as its public API shows it.
#[derive(Debug, PartialEq)]
struct Contents {
    projects: Vec<String>,
    workloads: Vec<WorkloadRecord>,
    /// Keyed by "project/name" of the workloads still stored.
    revisions: Vec<(String, RevisionRecord)>,
    instances: Vec<InstanceRecord>,
    events: Vec<EventRecord>,
}

impl Default for Contents {
    fn default() -> Contents {
        Contents {
            projects: vec!["default".to_owned()],
            workloads: Vec::new(),
            revisions: Vec::new(),
            instances: Vec::new(),
            events: Vec::new(),
        }
    }
}

fn contents(store: &Store) -> Contents {
    let workloads = store.list_workloads(None).expect("list workloads");
    let mut revisions = Vec::new();
    for workload in &workloads {
        for revision in store
            .list_revisions(&workload.project, &workload.name)
            .expect("list revisions")
        {
            revisions.push((format!("{}/{}", workload.project, workload.name), revision));
        }
    }
    Contents {
        projects: store.list_projects().expect("list projects"),
        workloads,
        revisions,
        instances: store.list_instances(None).expect("list instances"),
        events: store
            .list_events(None, None, usize::MAX)
            .expect("list events"),
    }
}

fn workload(project: &str, name: &str, revision: i64) -> WorkloadRecord {
    WorkloadRecord {
        project: project.to_owned(),
        name: name.to_owned(),
        kind: "process".to_owned(),
        spec_json: spec(revision),
        revision,
        desired_state: "running".to_owned(),
        created_at_ms: 1_000,
        updated_at_ms: 1_000 + revision,
    }
}

fn spec(revision: i64) -> String {
    format!(r#"{{"command":["sleep","{revision}"]}}"#)
}

/// The revision row that putting `workload` records.
fn revision_of(workload: &WorkloadRecord) -> (String, RevisionRecord) {
    (
        format!("{}/{}", workload.project, workload.name),
        RevisionRecord {
            revision: workload.revision,
            spec_json: workload.spec_json.clone(),
            created_at_ms: workload.updated_at_ms,
        },
    )
}

fn instance(project: &str, workload: &str, replica: u32) -> InstanceRecord {
    InstanceRecord {
        project: project.to_owned(),
        workload: workload.to_owned(),
        replica,
        state: "running".to_owned(),
        pid: Some(4_000 + replica),
        monitor_pid: Some(3_000 + replica),
        restarts: 2,
        exit_code: Some(-9),
        oom_killed: true,
        started_at_ms: Some(2_000),
        finished_at_ms: Some(3_000),
        handle_json: Some(r#"{"cgroup":"/ward/web"}"#.to_owned()),
        message: Some("back-off".to_owned()),
        updated_at_ms: 3_500,
    }
}

fn event(workload: Option<&str>, kind: &str) -> NewEvent {
    NewEvent {
        time_ms: 5_000,
        project: "default".to_owned(),
        workload: workload.map(str::to_owned),
        replica: workload.map(|_| 1),
        kind: kind.to_owned(),
        message: format!("{kind} happened"),
        data_json: "{}".to_owned(),
    }
}

fn recorded(id: i64, event: &NewEvent) -> EventRecord {
    EventRecord {
        id,
        time_ms: event.time_ms,
        project: event.project.clone(),
        workload: event.workload.clone(),
        replica: event.replica,
        kind: event.kind.clone(),
        message: event.message.clone(),
        data_json: event.data_json.clone(),
    }
}

#[test]
fn fresh_database_has_only_the_default_project() {
    let fixture = Fixture::new();
    assert_eq!(fixture.store.latest_event_id().unwrap(), None);
    fixture.check(Contents::default());
}

#[test]
fn ensure_project_is_idempotent() -> Result<(), StoreError> {
    let fixture = Fixture::new();
    fixture.store.ensure_project("team-b", None)?;
    fixture.store.ensure_project("alpha", None)?;
    fixture.store.ensure_project("team-b", None)?;
    fixture.store.ensure_project("default", None)?;
    fixture.check(Contents {
        projects: vec![
            "alpha".to_owned(),
            "default".to_owned(),
            "team-b".to_owned(),
        ],
        ..Contents::default()
    });
    Ok(())
}

#[test]
fn ensure_project_rejects_an_empty_name() {
    let fixture = Fixture::new();
    let error = fixture.store.ensure_project("", None).unwrap_err();
    assert!(matches!(error, StoreError::Constraint { .. }), "{error:?}");
    fixture.check(Contents::default());
}

#[test]
fn put_workloads_round_trips_with_revisions_and_events() -> Result<(), StoreError> {
    let fixture = Fixture::new();
    let store = &fixture.store;
    let web = workload("default", "web", 1);
    let db = workload("default", "db", 1);
    let applied = [event(Some("web"), "applied"), event(Some("db"), "applied")];
    assert_eq!(
        store.put_workloads(&[web.clone(), db.clone()], &applied, None)?,
        [1, 2]
    );
    assert_eq!(store.get_workload("default", "web")?, Some(web.clone()));
    assert_eq!(store.get_workload("default", "nope")?, None);

    let web_2 = WorkloadRecord {
        desired_state: "stopped".to_owned(),
        ..workload("default", "web", 2)
    };
    let updated = event(Some("web"), "updated");
    assert_eq!(
        store.put_workloads(slice::from_ref(&web_2), slice::from_ref(&updated), None)?,
        [3]
    );
    // The same revision again, with the same spec, adds no history.
    assert_eq!(
        store.put_workloads(slice::from_ref(&web_2), &[], None)?,
        Vec::<i64>::new()
    );

    fixture.check(Contents {
        workloads: vec![db.clone(), web_2.clone()],
        revisions: vec![revision_of(&db), revision_of(&web), revision_of(&web_2)],
        events: vec![
            recorded(1, &applied[0]),
            recorded(2, &applied[1]),
            recorded(3, &updated),
        ],
        ..Contents::default()
    });
    Ok(())
}

#[test]
fn put_workloads_with_an_unknown_project_writes_nothing() {
    let fixture = Fixture::new();
    let batch = [workload("default", "web", 1), workload("nowhere", "db", 1)];
    let error = fixture
        .store
        .put_workloads(&batch, &[event(Some("web"), "applied")], None)
        .unwrap_err();
    assert!(matches!(error, StoreError::Constraint { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "put workload nowhere/db: constraint violated: FOREIGN KEY constraint failed"
    );
    fixture.check(Contents::default());
}

#[test]
fn put_workloads_rejects_a_stored_revision_with_another_spec() -> Result<(), StoreError> {
    let fixture = Fixture::new();
    let web = workload("default", "web", 1);
    fixture
        .store
        .put_workloads(slice::from_ref(&web), &[], None)?;
    let rewritten = WorkloadRecord {
        spec_json: spec(99),
        ..web.clone()
    };
    let error = fixture
        .store
        .put_workloads(&[rewritten], &[event(Some("web"), "applied")], None)
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "put workload default/web: constraint violated: \
         revision 1 is already stored with a different spec"
    );
    fixture.check(Contents {
        workloads: vec![web.clone()],
        revisions: vec![revision_of(&web)],
        ..Contents::default()
    });
    Ok(())
}

#[test]
fn list_workloads_filters_by_project_and_orders_by_project_then_name() -> Result<(), StoreError> {
    let fixture = Fixture::new();
    let store = &fixture.store;
    store.ensure_project("alpha", None)?;
    let [alpha_z, default_b, alpha_a] = [
        workload("alpha", "z", 1),
        workload("default", "b", 1),
        workload("alpha", "a", 1),
    ];
    store.put_workloads(
        &[alpha_z.clone(), default_b.clone(), alpha_a.clone()],
        &[],
        None,
    )?;
    assert_eq!(
        store.list_workloads(None)?,
        [alpha_a.clone(), alpha_z.clone(), default_b.clone()]
    );
    assert_eq!(store.list_workloads(Some("alpha"))?, [alpha_a, alpha_z]);
    assert_eq!(store.list_workloads(Some("default"))?, [default_b]);
    assert_eq!(store.list_workloads(Some("nowhere"))?, []);
    Ok(())
}

#[test]
fn set_desired_state_updates_only_an_existing_workload() -> Result<(), StoreError> {
    let fixture = Fixture::new();
    let web = workload("default", "web", 1);
    fixture
        .store
        .put_workloads(slice::from_ref(&web), &[], None)?;
    assert!(fixture
        .store
        .set_desired_state("default", "web", "stopped", 9_000, None)?);
    assert!(!fixture
        .store
        .set_desired_state("default", "nope", "stopped", 9_000, None)?);
    let stopped = WorkloadRecord {
        desired_state: "stopped".to_owned(),
        updated_at_ms: 9_000,
        ..web.clone()
    };
    fixture.check(Contents {
        workloads: vec![stopped],
        revisions: vec![revision_of(&web)],
        ..Contents::default()
    });
    Ok(())
}

#[test]
fn delete_workload_cascades_to_instances_and_revisions_but_keeps_events() -> Result<(), StoreError>
{
    let fixture = Fixture::new();
    let store = &fixture.store;
    let applied = event(Some("web"), "applied");
    store.put_workloads(
        &[workload("default", "web", 1), workload("default", "db", 1)],
        slice::from_ref(&applied),
        None,
    )?;
    store.put_workloads(&[workload("default", "web", 2)], &[], None)?;
    store.put_instance(&instance("default", "web", 0), &[])?;
    store.put_instance(&instance("default", "web", 1), &[])?;
    store.put_instance(&instance("default", "db", 0), &[])?;

    let deleted = event(Some("web"), "deleted");
    assert!(store.delete_workload("default", "web", slice::from_ref(&deleted))?);
    assert!(!store.delete_workload("default", "web", &[event(Some("web"), "deleted")])?);
    // Recreated, the workload starts a fresh history.
    let web_again = workload("default", "web", 3);
    store.put_workloads(slice::from_ref(&web_again), &[], None)?;

    let db = workload("default", "db", 1);
    fixture.check(Contents {
        workloads: vec![db.clone(), web_again.clone()],
        revisions: vec![revision_of(&db), revision_of(&web_again)],
        instances: vec![instance("default", "db", 0)],
        events: vec![recorded(1, &applied), recorded(2, &deleted)],
        ..Contents::default()
    });
    Ok(())
}

#[test]
fn put_instance_inserts_replaces_and_deletes() -> Result<(), StoreError> {
    let fixture = Fixture::new();
    let store = &fixture.store;
    store.ensure_project("alpha", None)?;
    store.put_workloads(
        &[workload("default", "web", 1), workload("alpha", "web", 1)],
        &[],
        None,
    )?;
    let started = event(Some("web"), "started");
    assert_eq!(
        store.put_instance(&instance("default", "web", 1), slice::from_ref(&started))?,
        [1]
    );
    store.put_instance(&instance("default", "web", 0), &[])?;
    store.put_instance(&instance("alpha", "web", 0), &[])?;
    let bare = InstanceRecord {
        state: "pending".to_owned(),
        pid: None,
        monitor_pid: None,
        restarts: 0,
        exit_code: None,
        oom_killed: false,
        started_at_ms: None,
        finished_at_ms: None,
        handle_json: None,
        message: None,
        updated_at_ms: 7_000,
        ..instance("default", "web", 0)
    };
    store.put_instance(&bare, &[])?;
    assert_eq!(
        store.list_instances(Some("default"))?,
        [bare.clone(), instance("default", "web", 1)]
    );
    assert!(store.delete_instance("default", "web", 1)?);
    assert!(!store.delete_instance("default", "web", 1)?);

    let alpha_web = workload("alpha", "web", 1);
    let default_web = workload("default", "web", 1);
    fixture.check(Contents {
        projects: vec!["alpha".to_owned(), "default".to_owned()],
        workloads: vec![alpha_web.clone(), default_web.clone()],
        revisions: vec![revision_of(&alpha_web), revision_of(&default_web)],
        instances: vec![instance("alpha", "web", 0), bare],
        events: vec![recorded(1, &started)],
    });
    Ok(())
}

#[test]
fn put_instance_of_an_unknown_workload_writes_nothing() {
    let fixture = Fixture::new();
    let error = fixture
        .store
        .put_instance(
            &instance("default", "ghost", 0),
            &[event(Some("ghost"), "started")],
        )
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "put instance default/ghost/0: constraint violated: FOREIGN KEY constraint failed"
    );
    fixture.check(Contents::default());
}

#[test]
fn list_events_pages_in_ascending_id_order() -> Result<(), StoreError> {
    let fixture = Fixture::new();
    let events: Vec<NewEvent> = (0..5)
        .map(|index| event(None, &format!("kind-{index}")))
        .collect();
    assert_eq!(fixture.store.append_events(&events[..2])?, [1, 2]);
    assert_eq!(fixture.store.append_events(&events[2..])?, [3, 4, 5]);
    assert_eq!(fixture.store.append_events(&[])?, Vec::<i64>::new());
    assert_eq!(fixture.store.latest_event_id()?, Some(5));
    let all: Vec<EventRecord> = events
        .iter()
        .zip(1..)
        .map(|(event, id)| recorded(id, event))
        .collect();
    assert_eq!(fixture.store.list_events(None, None, 2)?, all[..2]);
    assert_eq!(fixture.store.list_events(None, Some(2), 2)?, all[2..4]);
    assert_eq!(fixture.store.list_events(None, Some(4), 10)?, all[4..]);
    assert_eq!(fixture.store.list_events(None, Some(5), 10)?, []);
    assert_eq!(fixture.store.list_events(None, None, 0)?, []);
    fixture.check(Contents {
        events: all,
        ..Contents::default()
    });
    Ok(())
}

#[test]
fn events_are_filtered_by_project_and_the_newest_read_in_sql() -> Result<(), StoreError> {
    let fixture = Fixture::new();
    let events: Vec<NewEvent> = (0..6)
        .map(|index| NewEvent {
            project: if index % 2 == 0 { "a" } else { "b" }.to_owned(),
            ..event(None, &format!("kind-{index}"))
        })
        .collect();
    fixture.store.append_events(&events)?;
    let all: Vec<EventRecord> = events
        .iter()
        .zip(1..)
        .map(|(event, id)| recorded(id, event))
        .collect();
    let of_a = [all[0].clone(), all[2].clone(), all[4].clone()];
    assert_eq!(fixture.store.list_events(Some("a"), None, 10)?, of_a);
    assert_eq!(
        fixture.store.list_events(Some("a"), Some(1), 1)?,
        [all[2].clone()]
    );
    assert_eq!(fixture.store.list_events(Some("c"), None, 10)?, []);
    assert_eq!(
        fixture.store.latest_events(Some("b"), 2)?,
        [all[3].clone(), all[5].clone()]
    );
    assert_eq!(fixture.store.latest_events(None, 2)?, all[4..]);
    assert_eq!(fixture.store.latest_events(None, 100)?, all);
    Ok(())
}

#[test]
fn event_ids_keep_growing_after_prune_and_reopen() -> Result<(), StoreError> {
    let fixture = Fixture::new();
    let events: Vec<NewEvent> = (0..5)
        .map(|index| event(None, &format!("kind-{index}")))
        .collect();
    fixture.store.append_events(&events)?;
    assert_eq!(fixture.store.prune_events(2)?, 3);
    assert_eq!(fixture.store.prune_events(2)?, 0);
    assert_eq!(fixture.store.prune_events(usize::MAX)?, 0);
    assert_eq!(
        fixture.store.list_events(None, None, 10)?,
        [recorded(4, &events[3]), recorded(5, &events[4])]
    );
    assert_eq!(fixture.store.prune_events(0)?, 2);
    assert_eq!(fixture.store.latest_event_id()?, None);
    assert_eq!(fixture.store.append_events(&events[..1])?, [6]);

    let path = fixture.path();
    drop(fixture.store);
    let store = Store::open(&path)?;
    assert_eq!(store.prune_events(0)?, 1);
    assert_eq!(store.append_events(&events[1..2])?, [7]);
    assert_eq!(
        store.list_events(None, None, 10)?,
        [recorded(7, &events[1])]
    );
    Ok(())
}

#[test]
fn open_in_memory_is_migrated_and_usable() -> Result<(), StoreError> {
    let store = Store::open_in_memory()?;
    let web = workload("default", "web", 1);
    store.put_workloads(
        slice::from_ref(&web),
        &[event(Some("web"), "applied")],
        None,
    )?;
    store.check_integrity()?;
    assert_eq!(store.list_workloads(None)?, [web]);
    assert_eq!(store.latest_event_id()?, Some(1));
    Ok(())
}

#[test]
fn store_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
}

#[test]
fn schema_version_newer_than_this_ward_is_a_clear_error() {
    let fixture = Fixture::new();
    let path = fixture.path();
    drop(fixture.store);
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection
        .pragma_update(None, "user_version", SCHEMA_VERSION + 6)
        .unwrap();
    drop(connection);
    let error = Store::open(&path).err().expect("open must fail");
    assert_eq!(
        error.to_string(),
        format!(
            "database {} has schema version {} but this ward knows up to {SCHEMA_VERSION}: \
             upgrade ward",
            path.display(),
            SCHEMA_VERSION + 6
        )
    );
}

#[test]
fn open_names_the_path_it_could_not_open() {
    let directory = tempfile::tempdir().unwrap();
    let missing = directory.path().join("missing").join("ward.db");
    let error = Store::open(&missing).err().expect("open must fail");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("open database {}: ", missing.display())),
        "{message}"
    );

    let not_a_database = directory.path().join("notes.txt");
    std::fs::write(&not_a_database, "x".repeat(4096)).unwrap();
    let error = Store::open(&not_a_database).err().expect("open must fail");
    assert!(matches!(error, StoreError::Open { .. }), "{error:?}");
}

const CRASH_CHILD: &str = "WARD_STORE_CRASH_CHILD";
const CRASH_TEST: &str = "kill_nine_while_writing_leaves_only_whole_batches";
const BATCH_SIZE: usize = 50;
const BATCHES_BEFORE_KILL: i64 = 40;

/// Re-runs this test binary as a child that writes batches until it is
/// killed with SIGKILL, then checks the file holds only whole batches.
#[test]
fn kill_nine_while_writing_leaves_only_whole_batches() {
    if let Some(path) = std::env::var_os(CRASH_CHILD) {
        write_batches_until_killed(Path::new(&path));
        return;
    }
    let fixture = Fixture::new();
    let path = fixture.path();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([CRASH_TEST, "--exact", "--test-threads=1"])
        .env(CRASH_CHILD, &path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn crash child");

    let deadline = Instant::now() + Duration::from_secs(60);
    let wanted_events = BATCHES_BEFORE_KILL * BATCH_SIZE as i64;
    while fixture.store.latest_event_id().unwrap().unwrap_or(0) < wanted_events {
        assert!(
            child.try_wait().unwrap().is_none(),
            "crash child exited early"
        );
        assert!(
            Instant::now() < deadline,
            "crash child committed too little in 60 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // `Child::kill` sends SIGKILL on Unix: no destructor, no rollback.
    child.kill().unwrap();
    child.wait().unwrap();

    let Fixture { directory, store } = fixture;
    drop(store);
    let store = Store::open(&directory.path().join("ward.db")).expect("reopen after kill -9");
    store.check_integrity().expect("integrity after kill -9");

    let workloads = store.list_workloads(Some("default")).unwrap();
    let events = store.list_events(None, None, usize::MAX).unwrap();
    let batches = workloads.len() / BATCH_SIZE;
    assert!(batches as i64 >= BATCHES_BEFORE_KILL, "{batches} batches");
    let whole: BTreeMap<usize, usize> = (0..batches).map(|batch| (batch, BATCH_SIZE)).collect();
    assert_eq!(
        count_by_batch(workloads.iter().map(|w| w.name.as_str())),
        whole
    );
    assert_eq!(
        count_by_batch(events.iter().map(|e| e.message.as_str())),
        whole
    );
    for workload in &workloads {
        let revisions = store.list_revisions("default", &workload.name).unwrap();
        assert_eq!(revisions.len(), 1, "revisions of {}", workload.name);
    }
    // The file still takes writes.
    store
        .put_workloads(&[workload("default", "after-crash", 1)], &[], None)
        .unwrap();
}

fn write_batches_until_killed(path: &Path) {
    let store = Store::open(path).unwrap();
    // Bounded, so that a child whose parent died does not write forever.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut batch = 0;
    while Instant::now() < deadline {
        let names: Vec<String> = (0..BATCH_SIZE)
            .map(|index| format!("batch-{batch}-{index}"))
            .collect();
        let workloads: Vec<WorkloadRecord> = names
            .iter()
            .map(|name| workload("default", name, 1))
            .collect();
        let events: Vec<NewEvent> = names
            .iter()
            .map(|name| NewEvent {
                message: name.clone(),
                ..event(Some(name), "applied")
            })
            .collect();
        store.put_workloads(&workloads, &events, None).unwrap();
        batch += 1;
    }
}

/// Counts names of the form `batch-{batch}-{index}` per batch.
fn count_by_batch<'a>(names: impl Iterator<Item = &'a str>) -> BTreeMap<usize, usize> {
    let mut counts = BTreeMap::new();
    for name in names {
        let batch = name
            .strip_prefix("batch-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|batch| batch.parse().ok())
            .unwrap_or_else(|| panic!("unexpected name {name}"));
        *counts.entry(batch).or_insert(0) += 1;
    }
    counts
}

#[test]
fn check_integrity_reports_rows_whose_parent_is_missing() {
    let fixture = Fixture::new();
    let path = fixture.path();
    drop(fixture.store);
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection
        .pragma_update(None, "foreign_keys", "OFF")
        .unwrap();
    connection
        .execute(
            "INSERT INTO instances (project, workload, replica, state, restarts, oom_killed,
                 updated_at_ms)
             VALUES ('default', 'ghost', 0, 'running', 0, 0, 0)",
            [],
        )
        .unwrap();
    drop(connection);
    let store = Store::open(&path).unwrap();
    let error = store.check_integrity().unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "database {} failed its integrity check: \
             instances row 1 references a missing workloads row",
            path.display()
        )
    );
}

fn image(reference: &str, digest: char, at_ms: i64) -> ImageRecord {
    ImageRecord {
        project: "default".into(),
        reference: reference.into(),
        manifest_digest: format!("sha256:{}", digest.to_string().repeat(64)),
        config_digest: format!("sha256:{}", "c".repeat(64)),
        size: 1234,
        platform: "linux/amd64".into(),
        source: "pull".into(),
        created_at_ms: at_ms,
        updated_at_ms: at_ms,
    }
}

#[test]
fn images_are_named_per_project_and_retagging_keeps_the_creation_time() {
    let fixture = Fixture::new();
    let store = &fixture.store;
    store
        .put_image(&image("docker.io/library/busybox:1", 'a', 1_000), None)
        .unwrap();
    store
        .put_image(&image("docker.io/library/busybox:1", 'b', 2_000), None)
        .unwrap();
    store
        .put_image(&image("docker.io/library/alpine:3", 'a', 3_000), None)
        .unwrap();
    let busybox = store
        .get_image("default", "docker.io/library/busybox:1")
        .unwrap()
        .expect("busybox is recorded");
    assert_eq!(
        busybox.manifest_digest,
        format!("sha256:{}", "b".repeat(64))
    );
    assert_eq!(
        (busybox.created_at_ms, busybox.updated_at_ms),
        (1_000, 2_000)
    );
    let listed: Vec<String> = store
        .list_images(Some("default"))
        .unwrap()
        .into_iter()
        .map(|image| image.reference)
        .collect();
    assert_eq!(
        listed,
        ["docker.io/library/alpine:3", "docker.io/library/busybox:1"]
    );
    assert!(store.list_images(Some("other")).unwrap().is_empty());
    assert!(store
        .delete_image("default", "docker.io/library/alpine:3", None)
        .unwrap());
    assert!(!store
        .delete_image("default", "docker.io/library/alpine:3", None)
        .unwrap());
    let mut unknown_project = image("docker.io/library/busybox:1", 'a', 1);
    unknown_project.project = "nowhere".into();
    assert!(store.put_image(&unknown_project, None).is_err());
}

/// Every change of keys, secrets, quotas, users, grants, projects and image names commits
/// with its audit entry or not at all: with the audit log refusing rows (a trigger), each
/// change fails and leaves nothing behind; without an entry, the same change goes through.
#[test]
fn access_changes_commit_with_their_audit_entry_or_not_at_all() {
    use ward_store::{ApiKeyRecord, GrantRecord, NewAuditEntry, QuotaRecord, SecretRecord};
    let fixture = Fixture::new();
    let store = &fixture.store;
    let raw = rusqlite::Connection::open(fixture.path()).expect("open the file");
    raw.execute_batch(
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log
         BEGIN SELECT RAISE(ABORT, 'the audit log refuses'); END;",
    )
    .expect("trigger");
    let entry = NewAuditEntry {
        time_ms: 1,
        actor: "key:test".to_string(),
        on_behalf_of: None,
        project: Some("default".to_string()),
        action: "PUT /api/v1/secrets/{name}".to_string(),
        target: "/api/v1/secrets/token".to_string(),
        status: 200,
        outcome: "ok".to_string(),
    };
    let audit = Some(&entry);
    let secret = SecretRecord {
        project: "default".to_string(),
        name: "token".to_string(),
        nonce: vec![0; 12],
        ciphertext: vec![1, 2, 3],
        created_at_ms: 1,
        updated_at_ms: 1,
    };
    let quota = QuotaRecord {
        project: "default".to_string(),
        cpu: Some(1.0),
        memory: None,
        workloads: Some(3),
        replicas: None,
        gpus: None,
        volume_bytes: None,
        updated_at_ms: 1,
    };
    let key = ApiKeyRecord {
        id: "k1".to_string(),
        name: "ci".to_string(),
        project: Some("default".to_string()),
        role: "viewer".to_string(),
        capabilities: String::new(),
        secret_hash: "00".to_string(),
        created_by: "admin-token".to_string(),
        created_at_ms: 1,
        expires_at_ms: None,
        revoked_at_ms: None,
    };
    let grant = GrantRecord {
        user: "ana".to_string(),
        project: "default".to_string(),
        role: "operator".to_string(),
        capabilities: String::new(),
    };
    let image = ImageRecord {
        project: "default".to_string(),
        reference: "docker.io/library/busybox:1".to_string(),
        manifest_digest: format!("sha256:{}", "a".repeat(64)),
        config_digest: format!("sha256:{}", "b".repeat(64)),
        size: 1,
        platform: "linux/amd64".to_string(),
        source: "pull".to_string(),
        created_at_ms: 1,
        updated_at_ms: 1,
    };

    // Creations refused with their entry leave nothing.
    assert!(store.put_secret(&secret, audit).is_err());
    assert!(store
        .get_secret("default", "token")
        .expect("read")
        .is_none());
    assert!(store.put_quota(&quota, audit).is_err());
    assert!(store.get_quota("default").expect("read").is_none());
    assert!(store.put_api_key(&key, audit).is_err());
    assert!(store.get_api_key("k1").expect("read").is_none());
    assert!(store.ensure_project("fresh", audit).is_err());
    assert!(!store.project_exists("fresh").expect("read"));
    assert!(store.put_user("ana", "hash", 1, audit).is_err());
    assert!(store.get_user("ana").expect("read").is_none());
    assert!(store.put_image(&image, audit).is_err());
    assert!(store.list_images(None).expect("read").is_empty());

    // The same changes without an entry (Ward's own) go through.
    store.put_secret(&secret, None).expect("secret");
    store.put_api_key(&key, None).expect("key");
    store.put_user("ana", "hash", 1, None).expect("user");
    store.put_grant(&grant, None).expect("grant");
    store.put_image(&image, None).expect("image");

    // Removals refused with their entry keep what they would remove.
    assert!(store.delete_secret("default", "token", audit).is_err());
    assert!(store
        .get_secret("default", "token")
        .expect("read")
        .is_some());
    assert!(store.revoke_api_key("k1", 2, audit).is_err());
    let kept = store.get_api_key("k1").expect("read").expect("the key");
    assert_eq!(kept.revoked_at_ms, None);
    assert!(store.delete_grant("ana", "default", audit).is_err());
    assert_eq!(store.list_grants("ana").expect("read").len(), 1);
    assert!(store.put_grant(&grant, audit).is_err());
    assert!(store.delete_user("ana", audit).is_err());
    assert!(store.get_user("ana").expect("read").is_some());
    assert!(store
        .delete_image("default", "docker.io/library/busybox:1", audit)
        .is_err());
    assert_eq!(store.list_images(None).expect("read").len(), 1);
    assert!(store.list_audit(None, 0, 10).expect("read").is_empty());
}
