-- ./scripts/demo.sh --schedule, after pg_cron's first run of the schedule.
\pset footer off
\echo 'pg_cron ran the job (la_schedules()):'
SELECT audience, jobid, schedule, last_start, last_end, last_status, last_message FROM la_schedules();
\echo 'The scheduled computes (linked_audiences.runs), and who entered or left:'
SELECT a.key AS audience, r.started_at, r.status, r.members, r.entered, r.exited
FROM linked_audiences.runs r JOIN linked_audiences.audience a ON a.id = r.audience_id
WHERE r.started_at >= (SELECT min(last_start) FROM la_schedules())
ORDER BY r.id;
SELECT a.key AS audience, p.first_name || ' (' || p.user_id || ')' AS profile, c.change
FROM linked_audiences.membership_changes c
JOIN linked_audiences.runs r ON r.id = c.run_id
JOIN linked_audiences.audience a ON a.id = c.audience_id
JOIN profiles p ON p.id::text = c.profile_id
WHERE r.started_at >= (SELECT min(last_start) FROM la_schedules())
ORDER BY a.id, p.user_id;
\echo 'Its events, waiting in the outbox:'
SELECT o.destination, o.aggregateid AS user_id, o.type, o.action
FROM linked_audiences.outbox o JOIN linked_audiences.runs r ON r.id = o.run_id
WHERE r.started_at >= (SELECT min(last_start) FROM la_schedules())
ORDER BY o.seq;
