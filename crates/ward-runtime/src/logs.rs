//! Instance logs: the monitor writes the workload's stdout and stderr to `DIR/log` in the CRI
//! line format (what Kubernetes' container runtimes write), rotates the file by size, and the
//! daemon reads the files back. Every limit is a constant here.
//!
//! A line is `<RFC 3339 time, nanoseconds, UTC> <stdout|stderr> <F|P> <text>\n`: `F` ends a
//! line of the workload's output, `P` is a piece of a longer one that the next record of the
//! same stream continues.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::{LogLine, LogStream, RuntimeError};

/// The current file is rotated once it grows past this size.
pub const LOG_FILE_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Files kept: `log`, `log.1`, `log.2`; at most about `LOG_FILES_KEPT * LOG_FILE_MAX_BYTES`.
pub const LOG_FILES_KEPT: usize = 3;
/// Longer output lines are split into `P` records of this many bytes.
pub const LOG_LINE_MAX_BYTES: usize = 16 * 1024;

/// One record of a log file, as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord<'a> {
    pub time: SystemTime,
    pub stream: LogStream,
    /// `P`: the line continues in the next record of the same stream.
    pub partial: bool,
    pub text: &'a [u8],
}

/// Parses one line of a log file (without its `\n`); `None` for anything malformed.
pub fn parse_record(line: &[u8]) -> Option<LogRecord<'_>> {
    let mut fields = line.splitn(4, |byte| *byte == b' ');
    let time = std::str::from_utf8(fields.next()?).ok()?;
    let time = humantime::parse_rfc3339(time).ok()?;
    let stream = match fields.next()? {
        b"stdout" => LogStream::Stdout,
        b"stderr" => LogStream::Stderr,
        _ => return None,
    };
    let partial = match fields.next()? {
        b"F" => false,
        b"P" => true,
        _ => return None,
    };
    Some(LogRecord {
        time,
        stream,
        partial,
        text: fields.next().unwrap_or_default(),
    })
}

/// Joins `P` records with the rest of their line; for readers that follow the files.
#[derive(Debug, Default)]
pub struct LineAssembler {
    /// The unfinished line of stdout and of stderr, with the time of its first piece.
    pending: [Option<(SystemTime, Vec<u8>)>; 2],
}

impl LineAssembler {
    pub fn push(&mut self, record: &LogRecord<'_>) -> Option<LogLine> {
        let slot = &mut self.pending[record.stream as usize];
        let (time, mut text) = slot.take().unwrap_or_else(|| (record.time, Vec::new()));
        text.extend_from_slice(record.text);
        if record.partial {
            *slot = Some((time, text));
            return None;
        }
        Some(LogLine {
            time,
            stream: record.stream,
            text: String::from_utf8_lossy(&text).into_owned(),
        })
    }
}

/// The log files of an instance, oldest first: `log.2`, `log.1`, `log`.
pub fn log_files_oldest_first(current: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..LOG_FILES_KEPT)
        .rev()
        .map(|index| rotated_path(current, index))
        .collect();
    files.push(current.to_path_buf());
    files
}

fn rotated_path(current: &Path, index: usize) -> PathBuf {
    let mut name = current.as_os_str().to_owned();
    name.push(format!(".{index}"));
    PathBuf::from(name)
}

/// The lines of an instance's logs, oldest first: the last `tail` of those at or after `since`.
pub(crate) fn read_lines(
    current: &Path,
    tail: Option<usize>,
    since: Option<SystemTime>,
) -> Result<Vec<LogLine>, RuntimeError> {
    let mut assembler = LineAssembler::default();
    let mut lines = Vec::new();
    for path in log_files_oldest_first(current) {
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(RuntimeError::io("read", path, source)),
        };
        for line in bytes
            .split(|byte| *byte == b'\n')
            .filter(|line| !line.is_empty())
        {
            let Some(record) = parse_record(line) else {
                continue;
            };
            if let Some(line) = assembler.push(&record) {
                if since.is_none_or(|since| line.time >= since) {
                    lines.push(line);
                }
            }
        }
    }
    if let Some(tail) = tail {
        let skip = lines.len().saturating_sub(tail);
        lines.drain(..skip);
    }
    Ok(lines)
}

/// Follows an instance's log from where it ends now: each [`LogFollower::poll`] returns the
/// lines written since the previous one, reading only the new bytes and carrying on across
/// rotations (the file it reads is renamed to `log.1`; it finishes that one, then opens the
/// new `log`).
#[derive(Debug)]
pub struct LogFollower {
    current: PathBuf,
    /// The file being read and its inode; `None` until the log exists.
    open: Option<(File, u64)>,
    /// The bytes of a record whose newline has not been written yet.
    unfinished: Vec<u8>,
    assembler: LineAssembler,
}

impl LogFollower {
    /// A follower that returns only what is written after this call.
    pub fn from_end(current: &Path) -> LogFollower {
        let open = File::open(current).ok().and_then(|mut file| {
            let inode = inode_of(&file)?;
            io::Seek::seek(&mut file, io::SeekFrom::End(0)).ok()?;
            Some((file, inode))
        });
        LogFollower {
            current: current.to_path_buf(),
            open,
            unfinished: Vec::new(),
            assembler: LineAssembler::default(),
        }
    }

    /// The lines written since the last call, oldest first.
    pub fn poll(&mut self) -> Vec<LogLine> {
        let mut lines = Vec::new();
        let current_inode = fs::metadata(&self.current).ok().map(|metadata| {
            use std::os::unix::fs::MetadataExt;
            metadata.ino()
        });
        if let Some(open_inode) = self.open.as_ref().map(|(_, inode)| *inode) {
            // Whatever the monitor wrote before it rotated belongs to the file already open.
            self.read_new(&mut lines);
            if current_inode != Some(open_inode) {
                self.open = None;
                self.unfinished.clear();
            }
        }
        if self.open.is_none() {
            if let Ok(file) = File::open(&self.current) {
                if let Some(inode) = inode_of(&file) {
                    self.open = Some((file, inode));
                    self.read_new(&mut lines);
                }
            }
        }
        lines
    }

    fn read_new(&mut self, lines: &mut Vec<LogLine>) {
        let Some((file, _)) = &mut self.open else {
            return;
        };
        let mut bytes = std::mem::take(&mut self.unfinished);
        if io::Read::read_to_end(file, &mut bytes).is_err() {
            return;
        }
        let complete = bytes
            .iter()
            .rposition(|byte| *byte == b'\n')
            .map_or(0, |end| end + 1);
        for line in bytes[..complete]
            .split(|byte| *byte == b'\n')
            .filter(|line| !line.is_empty())
        {
            if let Some(line) = parse_record(line).and_then(|record| self.assembler.push(&record)) {
                lines.push(line);
            }
        }
        self.unfinished = bytes[complete..].to_vec();
    }
}

fn inode_of(file: &File) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    file.metadata().ok().map(|metadata| metadata.ino())
}

/// Writes records to the current log file, one `write(2)` per record, and rotates it. The file
/// (and its directory) is made at the first record, so an instance that prints nothing costs
/// no file, and one that does pays for it after its start.
#[derive(Debug)]
pub(crate) struct LogWriter {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    record: Vec<u8>,
}

impl LogWriter {
    pub fn new(path: &Path) -> LogWriter {
        LogWriter {
            path: path.to_path_buf(),
            file: None,
            size: 0,
            record: Vec::with_capacity(LOG_LINE_MAX_BYTES + 64),
        }
    }

    /// The current file, opened (and its directory made) if this is the first record.
    fn file(&mut self) -> io::Result<&mut File> {
        let file = match self.file.take() {
            Some(file) => file,
            None => {
                if let Some(dir) = self.path.parent() {
                    fs::create_dir_all(dir)?;
                }
                let file = open_for_append(&self.path)?;
                self.size = file.metadata()?.len();
                file
            }
        };
        Ok(self.file.insert(file))
    }

    pub fn write(&mut self, stream: LogStream, partial: bool, text: &[u8]) -> io::Result<()> {
        self.record.clear();
        write!(
            self.record,
            "{} {} {} ",
            humantime::format_rfc3339_nanos(SystemTime::now()),
            stream.as_str(),
            if partial { 'P' } else { 'F' }
        )?;
        self.record.extend_from_slice(text);
        self.record.push(b'\n');
        let record = std::mem::take(&mut self.record);
        let written = self.file().and_then(|file| file.write_all(&record));
        self.record = record;
        written?;
        self.size += self.record.len() as u64;
        if self.size > LOG_FILE_MAX_BYTES {
            self.rotate()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        for index in (1..LOG_FILES_KEPT.saturating_sub(1)).rev() {
            match fs::rename(
                rotated_path(&self.path, index),
                rotated_path(&self.path, index + 1),
            ) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        if LOG_FILES_KEPT > 1 {
            fs::rename(&self.path, rotated_path(&self.path, 1))?;
        } else {
            fs::remove_file(&self.path)?;
        }
        self.file = Some(open_for_append(&self.path)?);
        self.size = 0;
        Ok(())
    }
}

fn open_for_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

/// Cuts a stream of output into log records: a record per line, `P` pieces for lines longer
/// than [`LOG_LINE_MAX_BYTES`], and whatever is left when the stream ends.
#[derive(Debug)]
pub(crate) struct LineSplitter {
    pub stream: LogStream,
    pending: Vec<u8>,
}

impl LineSplitter {
    pub fn new(stream: LogStream) -> LineSplitter {
        LineSplitter {
            stream,
            pending: Vec::new(),
        }
    }

    pub fn push(&mut self, data: &[u8], writer: &mut LogWriter) -> io::Result<()> {
        let mut rest = data;
        while let Some(newline) = rest.iter().position(|byte| *byte == b'\n') {
            let (line, after) = rest.split_at(newline);
            self.emit_line(line, writer)?;
            rest = &after[1..];
        }
        self.pending.extend_from_slice(rest);
        while self.pending.len() >= LOG_LINE_MAX_BYTES {
            writer.write(self.stream, true, &self.pending[..LOG_LINE_MAX_BYTES])?;
            self.pending.drain(..LOG_LINE_MAX_BYTES);
        }
        Ok(())
    }

    /// Writes an unterminated last line, if any, as a full line.
    pub fn finish(&mut self, writer: &mut LogWriter) -> io::Result<()> {
        if !self.pending.is_empty() {
            writer.write(self.stream, false, &self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }

    fn emit_line(&mut self, line: &[u8], writer: &mut LogWriter) -> io::Result<()> {
        if self.pending.is_empty() {
            return self.emit_pieces(line, writer);
        }
        let mut joined = std::mem::take(&mut self.pending);
        joined.extend_from_slice(line);
        self.emit_pieces(&joined, writer)
    }

    fn emit_pieces(&mut self, mut line: &[u8], writer: &mut LogWriter) -> io::Result<()> {
        while line.len() > LOG_LINE_MAX_BYTES {
            writer.write(self.stream, true, &line[..LOG_LINE_MAX_BYTES])?;
            line = &line[LOG_LINE_MAX_BYTES..];
        }
        writer.write(self.stream, false, line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_and_read(chunks: &[(LogStream, &[u8])]) -> Vec<(LogStream, String)> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let mut writer = LogWriter::new(&path);
        let mut splitters = [
            LineSplitter::new(LogStream::Stdout),
            LineSplitter::new(LogStream::Stderr),
        ];
        for (stream, chunk) in chunks {
            splitters[*stream as usize]
                .push(chunk, &mut writer)
                .expect("push");
        }
        for splitter in &mut splitters {
            splitter.finish(&mut writer).expect("finish");
        }
        read_lines(&path, None, None)
            .expect("read")
            .into_iter()
            .map(|line| (line.stream, line.text))
            .collect()
    }

    /// A follower sees every line once: those written after it starts, across a rotation, and
    /// a record whose newline arrives in a later write.
    #[test]
    fn follower_reads_only_new_lines_across_a_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let append = |path: &Path, text: &str| {
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("open");
            file.write_all(text.as_bytes()).expect("write");
        };
        let texts =
            |lines: Vec<LogLine>| lines.into_iter().map(|line| line.text).collect::<Vec<_>>();
        append(&path, "2024-05-01T10:00:00.000000000Z stdout F before\n");
        let mut follower = LogFollower::from_end(&path);
        assert!(
            follower.poll().is_empty(),
            "lines from before the follower started"
        );
        append(&path, "2024-05-01T10:00:01.000000000Z stdout F one\n2024-05-01T10:00:02.000000000Z stderr P tw");
        assert_eq!(texts(follower.poll()), ["one"]);
        append(&path, "o-halves\n");
        assert!(
            follower.poll().is_empty(),
            "a partial record waits for the rest of its line"
        );
        append(&path, "2024-05-01T10:00:03.000000000Z stderr F !\n2024-05-01T10:00:04.000000000Z stdout F last in old\n");
        fs::rename(&path, dir.path().join("log.1")).expect("rotate");
        append(
            &path,
            "2024-05-01T10:00:05.000000000Z stdout F first in new\n",
        );
        assert_eq!(
            texts(follower.poll()),
            ["two-halves!", "last in old", "first in new"]
        );
        assert!(follower.poll().is_empty());
    }

    #[test]
    fn lines_keep_their_stream_and_order() {
        let lines = write_and_read(&[
            (LogStream::Stdout, b"one\ntw"),
            (LogStream::Stderr, b"oops\n"),
            (LogStream::Stdout, b"o\nthree"),
        ]);
        assert_eq!(
            lines,
            vec![
                (LogStream::Stdout, "one".to_string()),
                (LogStream::Stderr, "oops".to_string()),
                (LogStream::Stdout, "two".to_string()),
                (LogStream::Stdout, "three".to_string()),
            ]
        );
    }

    #[test]
    fn long_lines_are_split_and_joined_again() {
        let long = "é".repeat(LOG_LINE_MAX_BYTES) + "\n";
        let lines = write_and_read(&[
            (LogStream::Stdout, long.as_bytes()),
            (LogStream::Stdout, b"next\n"),
        ]);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].1, long.trim_end());
        assert_eq!(lines[1].1, "next");
    }

    #[test]
    fn records_parse_back() {
        let record =
            parse_record(b"2024-05-01T10:00:00.123456789Z stderr P a b c").expect("parses");
        assert_eq!(record.stream, LogStream::Stderr);
        assert!(record.partial);
        assert_eq!(record.text, b"a b c");
        assert_eq!(parse_record(b"garbage"), None);
        assert_eq!(
            parse_record(b"2024-05-01T10:00:00Z stdout F ").map(|record| record.text.len()),
            Some(0)
        );
    }

    #[test]
    fn rotation_keeps_a_bounded_number_of_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let mut writer = LogWriter::new(&path);
        let line = vec![b'x'; LOG_LINE_MAX_BYTES];
        let lines_per_file = (LOG_FILE_MAX_BYTES as usize) / LOG_LINE_MAX_BYTES + 1;
        for _ in 0..lines_per_file * (LOG_FILES_KEPT + 1) {
            writer
                .write(LogStream::Stdout, false, &line)
                .expect("write");
        }
        for file in log_files_oldest_first(&path) {
            let size = fs::metadata(&file).expect("rotated file exists").len();
            assert!(
                size <= LOG_FILE_MAX_BYTES + LOG_LINE_MAX_BYTES as u64 + 64,
                "{} is {size} bytes",
                file.display()
            );
        }
        assert!(
            !rotated_path(&path, LOG_FILES_KEPT).exists(),
            "more files kept than LOG_FILES_KEPT"
        );
    }

    #[test]
    fn tail_and_since_filter_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        fs::write(
            &path,
            "2024-05-01T10:00:00Z stdout F a\n2024-05-01T10:00:01Z stdout F b\n2024-05-01T10:00:02Z stdout F c\n",
        )
        .expect("write");
        let texts =
            |lines: Vec<LogLine>| lines.into_iter().map(|line| line.text).collect::<Vec<_>>();
        assert_eq!(
            texts(read_lines(&path, Some(2), None).expect("read")),
            ["b", "c"]
        );
        let since = humantime::parse_rfc3339("2024-05-01T10:00:01Z").expect("time");
        assert_eq!(
            texts(read_lines(&path, None, Some(since)).expect("read")),
            ["b", "c"]
        );
        assert_eq!(
            texts(read_lines(&path, Some(1), Some(since)).expect("read")),
            ["c"]
        );
    }
}
