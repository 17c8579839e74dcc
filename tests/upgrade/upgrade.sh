#!/usr/bin/env bash
# Upgrades: every released version is installed from its frozen script under sql/, given
# state, and updated with ALTER EXTENSION linked_audiences UPDATE along the shipped
# sql/linked_audiences--<from>--<to>.sql scripts. The state must survive, the updated
# database must compute on, and its extension objects must be exactly those of a fresh
# install of the new version.
#   tests/upgrade/upgrade.sh HOST_DIR PORT
set -euo pipefail
cd "$(dirname "$0")/../.."
host=$1 port=$2
source tests/lib.sh
current=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

# Every extension object with its definition, ACL and (for tables) columns sorted by
# name, constraints, indexes and triggers; plus what pg_dump is told to dump.
objects() { # DB
  q -d "$1" -c "
WITH ext AS (SELECT oid, extconfig, extcondition FROM pg_extension WHERE extname = 'linked_audiences'),
members AS (
  SELECT d.classid, d.objid FROM pg_depend d, ext
  WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e')
SELECT pg_describe_object(classid, objid, 0) || ': ' || coalesce(CASE classid
  WHEN 'pg_proc'::regclass THEN
    (SELECT pg_get_functiondef(objid) || ' acl ' || coalesce(proacl::text, '-') FROM pg_proc WHERE oid = objid)
  WHEN 'pg_class'::regclass THEN
    (SELECT relkind::text || ' acl ' || coalesce(relacl::text, '-') || ' ' || coalesce(pg_get_viewdef(oid), '')
       || ' columns ' || (SELECT coalesce(string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                            || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                            || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), ''), ', ' ORDER BY a.attname), '')
                          FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                          WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)
       || ' constraints ' || (SELECT coalesce(string_agg(conname || ' ' || pg_get_constraintdef(oid), '; ' ORDER BY conname), '')
                              FROM pg_constraint WHERE conrelid = c.oid)
       || ' indexes ' || (SELECT coalesce(string_agg(pg_get_indexdef(indexrelid), '; ' ORDER BY 1), '')
                          FROM pg_index WHERE indrelid = c.oid)
       || ' triggers ' || (SELECT coalesce(string_agg(pg_get_triggerdef(oid), '; ' ORDER BY 1), '')
                           FROM pg_trigger WHERE tgrelid = c.oid AND NOT tgisinternal)
     FROM pg_class c WHERE c.oid = objid)
  WHEN 'pg_namespace'::regclass THEN (SELECT 'acl ' || coalesce(nspacl::text, '-') FROM pg_namespace WHERE oid = objid)
  END, '')
FROM members
UNION ALL
SELECT 'dumped: ' || coalesce((SELECT string_agg(x.c::regclass::text || ' ' || coalesce(x.w, ''), ', ' ORDER BY 1)
                               FROM unnest(extconfig, extcondition) AS x(c, w)), '') FROM ext
ORDER BY 1"
}

"$BIN/dropdb" -h "$host" -p "$port" --if-exists la_upgrade_fresh
"$BIN/createdb" -h "$host" -p "$port" la_upgrade_fresh
q -d la_upgrade_fresh -c "CREATE EXTENSION linked_audiences"
fresh=$(objects la_upgrade_fresh)
"$BIN/dropdb" -h "$host" -p "$port" la_upgrade_fresh

checked=0
for script in sql/linked_audiences--*.sql; do
  from=$(basename "$script" .sql); from=${from#linked_audiences--}
  case $from in *--*) continue ;; esac   # an upgrade script, not a release
  db=la_upgrade_from_${from//./_}
  "$BIN/dropdb" -h "$host" -p "$port" --if-exists "$db"
  "$BIN/createdb" -h "$host" -p "$port" "$db"
  q -d "$db" -c "SET client_min_messages = warning" -c "CREATE EXTENSION linked_audiences VERSION '$from'" \
    -f demo/warehouse.sql >/dev/null
  la_make_state "$db"
  before=$(la_state "$db")
  q -d "$db" -c "ALTER EXTENSION linked_audiences UPDATE"
  version=$(q -d "$db" -c "SELECT extversion FROM pg_extension WHERE extname = 'linked_audiences'")
  [ "$version" = "$current" ] || { echo "upgrade from $from: at version $version, not $current"; exit 1; }
  same_state "upgrade from $from" "$before" "$(la_state "$db")"
  if [ "$(objects "$db")" != "$fresh" ]; then
    echo "upgrade from $from: the updated objects differ from a fresh install of $current (< updated, > fresh)"
    diff <(objects "$db") <(echo "$fresh") | head -40
    exit 1
  fi
  la_computes_on "$db" "upgrade from $from"
  "$BIN/dropdb" -h "$host" -p "$port" "$db"
  checked=$((checked + 1))
done
[ "$checked" -gt 0 ] || { echo "upgrade: no released version under sql/"; exit 1; }
echo "upgrade: ok ($checked released version(s) updated to $current: state survived, objects match a fresh install, computes on)"
