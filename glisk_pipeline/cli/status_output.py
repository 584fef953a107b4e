"""How `glisk status` prints what it found: text for a person, Prometheus text for a
textfile collector (`--json` is json.dumps of the same dict). Every part may be missing
(None) when what it needs could not be read; every cut list says how many it left out."""

from __future__ import annotations

from typing import Any

from glisk_pipeline.listing import more


def _seconds(value: int | None) -> str:
    return "" if value is None else f", {value} s"


def _cut(items: list[str], total: int) -> str:
    """A list already cut to its first items (listing.listed), with how many were left out."""
    return ", ".join(items) + more(total, len(items))


def print_text(s: dict[str, Any], state: str) -> None:
    chain, cp, hook, rows = s["chain"], s["checkpoint"], s["webhook"], s["rows"]
    if chain is None:
        print("chain       not read")
    else:
        print(f"chain       head {chain['head']} ({chain['head_time']}), final {chain['final']}")
    if cp is not None and "behind_final_blocks" in cp:
        seconds = _seconds(cp["behind_head_seconds"])
        print(
            f"checkpoint  last_processed_block {cp['last_processed_block']}: "
            f"{cp['behind_final_blocks']} blocks behind final, "
            f"{cp['behind_head_blocks']} blocks{seconds} behind head"
        )
    elif cp is not None:
        print(f"checkpoint  last_processed_block {cp['last_processed_block']}")
    if hook is None:
        print("webhook     no delivery recorded" if rows is not None else "webhook     not read")
    elif "behind_head_blocks" in hook:
        seconds = _seconds(hook["behind_head_seconds"])
        print(
            f"webhook     last block {hook['last_block']}, delivered "
            f"{hook['last_delivery_age_seconds']} s ago ({hook['last_delivery_at']}): "
            f"{hook['behind_head_blocks']} blocks{seconds} behind head"
        )
    else:
        block = hook["last_block"]
        named = "no block named" if block is None else f"last block {block}"
        print(
            f"webhook     {named}, delivered "
            f"{hook['last_delivery_age_seconds']} s ago ({hook['last_delivery_at']})"
        )
    if rows is None:
        print("rows        not read")
    else:
        print(
            f"rows        webhook {rows['webhook']}, backfill {rows['backfill']}, "
            f"removed {rows['removed']}"
        )
    print_integrity(s["integrity"])
    parts = s["partitions"]
    if parts is not None:
        print(
            f"partitions  {parts['added']} added: {parts['materialized']} materialized, "
            f"{parts['failed']} failed, {parts['in_progress']} in progress, "
            f"{parts['missing']} missing"
        )
        for label in ("failed", "missing"):
            if parts[f"{label}_keys"]:
                print(f"  {label}: {_cut(parts[f'{label}_keys'], parts[label])}")
    for check in s["checks"] or []:
        verdict = {True: "passed", False: "FAILED", None: check["status"].lower()}
        print(
            f"check       {check['name']}: {verdict[check['passed']]} "
            f"({check['severity']}, {check['at']})"
        )
    for line in s["warnings"]:
        print(f"WARNING     {line}")
    for line in s["problems"]:
        print(f"{state:<11} {line}")
    print(f"status      {state}")


def print_integrity(integrity: dict[str, Any]) -> None:
    contiguous = integrity["token_ids_contiguous"]
    if contiguous is not None:
        if contiguous["passed"]:
            print("token ids   contiguous")
        else:
            print(
                f"token ids   {contiguous['gaps']} gaps, {contiguous['overlaps']} overlaps; "
                "re-materialize "
                + _cut(
                    contiguous["partitions_to_rematerialize"],
                    contiguous["partitions_to_rematerialize_count"],
                )
            )
    supply = integrity["supply"]
    if supply is None:
        return
    if supply["block"] is None:
        print(f"supply      not compared: {'; '.join(supply['notes'])}")
        return
    where = f"at block {supply['block']}" + (" (advisory)" if supply["advisory"] else "")
    head = (
        f"supply      {where}: nextTokenId {supply['next_token_id']}, contract ids "
        f"{supply['first_id']}-{supply['next_token_id'] - 1}, tables {supply['live_ids']}"
    )
    if supply["consistent"]:
        print(f"{head}: all present")
        return
    print(f"{head}: {supply['missing_ids']} missing, {supply['extra_ids']} extra")
    for label in ("missing_ranges", "extra_ranges", "partitions_to_rematerialize"):
        if supply[label]:
            print(f"  {label.replace('_', ' ')}: {_cut(supply[label], supply[label + '_count'])}")


# --- Prometheus text format ------------------------------------------------------------------
# Served by `glisk exporter` (glisk_pipeline/exporter.py) on /metrics, or for node_exporter's
# textfile collector: `glisk status --prometheus > f.tmp && mv f.tmp
# /var/lib/node_exporter/glisk.prom` from cron. Why not the sidecar's /metrics: the proof
# costs provider calls, and the sidecar (public, answers Alchemy within 5 s, runs replicas
# x workers) would make them on every scrape of every worker and tie its own health to the
# provider's; the exporter makes them at most once per cache period.


# (name, help, where in the status dict: part, subpart, key)
GAUGES = (
    ("glisk_supply_missing_ids", "token ids of the contract's range not in the tables",
     ("integrity", "supply", "missing_ids")),
    ("glisk_supply_extra_ids", "live token ids beyond the contract's range or held twice",
     ("integrity", "supply", "extra_ids")),
    ("glisk_supply_next_token_id", "the contract's nextTokenId at the compared block",
     ("integrity", "supply", "next_token_id")),
    ("glisk_supply_proof_block", "the block the supply proof compared at",
     ("integrity", "supply", "block")),
    ("glisk_token_id_gaps", "gaps in the live token ids at or below the checkpoint",
     ("integrity", "token_ids_contiguous", "gaps")),
    ("glisk_token_id_overlaps", "token ids held by two live events",
     ("integrity", "token_ids_contiguous", "overlaps")),
    ("glisk_checkpoint_behind_final_blocks", "final block - last_processed_block",
     ("checkpoint", None, "behind_final_blocks")),
    ("glisk_webhook_delivery_age_seconds",
     "seconds since the last delivery any sidecar recorded in the database",
     ("webhook", None, "last_delivery_age_seconds")),
    ("glisk_webhook_behind_head_blocks", "chain head - the last block a delivery named",
     ("webhook", None, "behind_head_blocks")),
    ("glisk_orphaned_tokens", "token rows downstream moved on whose mint left the chain",
     ("downstream", None, "orphaned_tokens")),
)  # fmt: skip


def prometheus_text(s: dict[str, Any], code: int) -> str:
    lines: list[str] = []

    def gauge(name: str, help_: str, value: object) -> None:
        if isinstance(value, bool | int | float):
            lines.extend([f"# HELP {name} {help_}", f"# TYPE {name} gauge", f"{name} {value:d}"])

    supply = s["integrity"]["supply"]
    compared = supply is not None and supply["block"] is not None
    gauge(
        "glisk_supply_proof_ok",
        "1 when the live token ids equal the contract's range [first, nextTokenId - 1], "
        "0 when the proof fails (run glisk repair); absent when it could not be made",
        (0 if supply["failing"] else 1) if compared else None,
    )
    if compared:
        gauge(
            "glisk_supply_proof_advisory",
            "1 when the final block's state was gone and the proof compared near the head",
            int(supply["advisory"]),
        )
    for name, help_, (part, sub, key) in GAUGES:
        where = s[part] if sub is None else (s[part] or {}).get(sub)
        gauge(name, help_, (where or {}).get(key))
    gauge(
        "glisk_status_exit_code",
        "glisk status's exit code: 0 OK, 1 unreachable, 3 lagging, 4 failing",
        code,
    )
    return "\n".join(lines) + "\n"
