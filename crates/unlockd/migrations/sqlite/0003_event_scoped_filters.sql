-- Personnel-list filters read only the event's link rows: each link carries the person's
-- filterable fields (lowercased keys), indexed per event, so a filtered count touches the
-- matching rows and nothing else.
ALTER TABLE personnel_events ADD COLUMN exhibitor_id TEXT;
ALTER TABLE personnel_events ADD COLUMN department_key TEXT;
ALTER TABLE personnel_events ADD COLUMN level_key TEXT;
ALTER TABLE personnel_events ADD COLUMN source_type TEXT NOT NULL DEFAULT '[]';

UPDATE personnel_events SET
    exhibitor_id = (SELECT p.exhibitor_id FROM personnel p WHERE p.id = personnel_events.personnel_id),
    department_key = (SELECT lower(p.department) FROM personnel p WHERE p.id = personnel_events.personnel_id),
    level_key = (SELECT lower(p.seniority_level) FROM personnel p WHERE p.id = personnel_events.personnel_id),
    source_type = (SELECT p.source_type FROM personnel p WHERE p.id = personnel_events.personnel_id);

CREATE INDEX personnel_events_by_department ON personnel_events (event_id, department_key, personnel_id);
CREATE INDEX personnel_events_by_level ON personnel_events (event_id, level_key, personnel_id);
CREATE INDEX personnel_events_by_exhibitor ON personnel_events (event_id, exhibitor_id, personnel_id);
