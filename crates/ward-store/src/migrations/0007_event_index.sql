-- Schema version 7: events are read per project, newest or after an id, in SQL.
CREATE INDEX events_by_project ON events (project, id);
