"""The guest's own name in /etc/hosts (its 127.0.1.1 line): --from-template writes the real name,
the exports (exports/identity.py) a placeholder for each instance's."""

from __future__ import annotations


def hosts_text(current: str, names: str) -> str:
    """/etc/hosts with its 127.0.1.1 line naming `names` (added after localhost if missing); every
    other line is kept as it is. Used by the exports and by --from-template."""
    out: list[str] = []
    done = False
    for line in current.splitlines():
        fields = line.split("#", 1)[0].split()
        if fields and fields[0] == "127.0.1.1":
            if not done:
                out.append(f"127.0.1.1\t{names}")
                done = True
            continue
        out.append(line)
    if not done:
        localhost = [i for i, line in enumerate(out) if line.split("#", 1)[0].split()[:1] == ["127.0.0.1"]]
        out.insert(localhost[-1] + 1 if localhost else 0, f"127.0.1.1\t{names}")
    return "\n".join(out) + "\n"
