"""Bash completion for `vmbuilder`, generated from the settings table so that it never drifts.

    python3 -m vmbuilder_lxc.completion > /usr/share/bash-completion/completions/vmbuilder

The script completes hypervisors, distros and the hypervisor's commands, every flag of a
hypervisor/distro pair (the parser that the settings table generates) and their values: choices,
directories and files, architectures and suites. Suites are the distro plugin's, read here from
distro-info-data (no network), and again at TAB time with awk, so that a distro-info-data update
shows up without regenerating. A pair or command from a plugin installed later is completed from
`vmbuilder HV DISTRO --help`, asked once per pair. Generation reads no config file and no cache:
it runs during a package build, and its output is byte-for-byte the same on every run.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from . import exports
from .arches import NATIVE_MACHINES
from .cli import GLOBAL_FLAGS, GLOBAL_VALUE_FLAGS, build_command_parser, make_context
from .distro import DebianFamily
from .log import UserError
from .plugin import Plugin, by_kind, command_parsers, commands_for, discover
from .plugintypes import DistroPlugin
from .settings import Setting
from .suites import ALIASES

# How a value is completed, by the metavar that names it. A new path-like metavar must be added
# here (tests/unit/test_completion.py checks every setting and command argument).
PATH_KINDS = {"DIR": "dir", "DEST": "dir", "TREE": "dir", "FILE": "file", "SCRIPT": "file", "PATH": "file"}
# Values of settings that have no `choices` because the plugin checks them itself.
KNOWN_VALUES: dict[str, tuple[str, ...]] = {"arch": tuple(NATIVE_MACHINES), "export": tuple(exports.FORMATS)}
HELP_FLAGS = ("-h", "--help", "--version")


@dataclass(frozen=True)
class Value:
    """How the value of an option (or a positional argument) is completed.

    kind: dir, file, choice (one of words), list (comma-separated words), suite (words, plus the
    series of distro-info-data's `info` csv at TAB time) or text (anything: nothing to offer).
    """

    kind: str
    words: tuple[str, ...] = ()
    info: tuple[str, ...] = ()  # suite: csv name, oldest supported version, series to leave out


@dataclass(frozen=True)
class Spec:
    """What follows `vmbuilder HV DISTRO` or `vmbuilder HV COMMAND`: flags, their values, a positional."""

    options: tuple[str, ...]
    values: tuple[tuple[tuple[str, ...], Value], ...]
    positional: Value | None = None


def value_for(
    name: str, metavar: str | None, choices: Iterable[str] | None, many: bool, extra: dict[str, Value]
) -> Value:
    """The completion of one option's value, decided from the data that declares it."""
    if name in extra:
        return extra[name]
    words = tuple(choices or ()) or KNOWN_VALUES.get(name, ())
    if words:
        return Value("list" if many else "choice", words)
    return Value(PATH_KINDS.get(metavar or "", "text"))


def suite_value(distro: DistroPlugin) -> Value | None:
    """The suites a Debian-family plugin builds, from distro-info-data only (the archive probe for a
    devel series newer than distro-info-data needs the network, so it is left to TAB time's csv)."""
    if not isinstance(distro, DebianFamily):
        return None
    try:
        releases = distro.releases().releases
    except UserError:  # no distro-info-data on the build host: TAB time reads the csv
        releases = []
    supported = tuple(r.series for r in releases if distro.unsupported(r) is None)
    skip = tuple(r.series for r in releases if r.version_key >= distro.min_version and distro.unsupported(r))
    oldest = ".".join(str(n) for n in distro.min_version) or "0"
    return Value("suite", supported + ALIASES, (distro.name, oldest, *skip))


def parser_spec(
    parser: argparse.ArgumentParser, settings: dict[str, Setting] | None = None, extra: dict[str, Value] | None = None
) -> Spec:
    """Flags and value kinds of an argparse parser; `settings` (by dest) adds choices and list types."""
    settings = settings or {}
    options: list[str] = []
    values: list[tuple[tuple[str, ...], Value]] = []
    positional = None
    for action in parser._actions:
        s = settings.get(action.dest)
        name = s.name if s else action.dest.replace("_", "-")
        metavar = action.metavar if isinstance(action.metavar, str) else None
        choices = s.choices if s else action.choices
        many = s.type == "list" if s else isinstance(action, argparse._AppendAction)
        if not action.option_strings:
            positional = positional or value_for(name, metavar, choices, many, {})
            continue
        options += action.option_strings
        if action.nargs != 0:
            flags = tuple(sorted(action.option_strings))
            values.append((flags, value_for(name, s.metavar if s else metavar, choices, many, extra or {})))
    return Spec(tuple(sorted(options)), tuple(sorted(values)), positional)


def pair_spec(hypervisor: str, distro: str, plugins: dict[str, type[Plugin]]) -> Spec:
    """`vmbuilder HV DISTRO`: the parser the settings table generates, as cli.configure builds it."""
    parser, by_dest = build_command_parser(hypervisor, distro, plugins)
    suite = suite_value(make_context(hypervisor, distro, plugins).distro) if "suite" in by_dest else None
    return parser_spec(parser, by_dest, {"suite": suite} if suite is not None else {})


@dataclass(frozen=True)
class Data:
    """Everything the script knows; specs are keyed by (hypervisor, distro or command)."""

    global_flags: tuple[str, ...]
    hypervisors: tuple[str, ...]
    distros: tuple[str, ...]
    commands: dict[str, tuple[str, ...]]
    specs: dict[tuple[str, str], Spec]


def collect(plugins: dict[str, type[Plugin]]) -> Data:
    hypervisors = tuple(by_kind(plugins, "hypervisor"))
    distros = tuple(by_kind(plugins, "distro"))
    commands: dict[str, tuple[str, ...]] = {}
    specs: dict[tuple[str, str], Spec] = {}
    for hv in hypervisors:
        for distro in distros:
            specs[(hv, distro)] = pair_spec(hv, distro, plugins)
        # A command named like a distro is shadowed by it (cli._main), so it is left out.
        commands[hv] = tuple(sorted(name for name in commands_for(plugins, hv) if name not in distros))
        # A command without a NAME_parser() is completed from `vmbuilder HV COMMAND --help` at TAB time.
        for name, parser in command_parsers(plugins, hv).items():
            if name in commands[hv]:
                specs[(hv, name)] = parser_spec(parser)
    flags = tuple(sorted({*GLOBAL_FLAGS, *GLOBAL_VALUE_FLAGS, *HELP_FLAGS}))
    return Data(flags, hypervisors, distros, commands, specs)


# -- the bash script ----------------------------------------------------------------------------


def _q(words: Iterable[str]) -> str:
    return shlex.quote(" ".join(words))


def _spec_function(name: str, spec: Spec) -> list[str]:
    lines = [f"{name}() {{", f"    opts={_q(spec.options)}"]
    if spec.positional is not None:
        lines.append(f"    pos={spec.positional.kind}")
    lines.append('    case "$1" in')
    grouped: dict[Value, list[str]] = {}  # one arm per distinct value (most are plain text)
    for flags, value in spec.values:
        grouped.setdefault(value, []).extend(flags)
    for value, group in grouped.items():
        assign = f"kind={value.kind}"
        if value.words:
            assign += f" wl={_q(value.words)}"
        if value.info:
            assign += f" info={_q(value.info)}"
        lines.append(f"        {'|'.join(shlex.quote(f) for f in group)}) {assign} ;;")
    lines += ["    esac", "}", ""]
    return lines


def bash_script(data: Data) -> str:
    """The completion script (deterministic: everything is sorted or in table order)."""
    functions: dict[Spec, str] = {}
    commands = [(hv, cmds) for hv, cmds in data.commands.items() if cmds]
    out = [HEADER]
    for spec in data.specs.values():
        if spec not in functions:
            functions[spec] = f"_vmbuilder_spec_{len(functions) + 1}"
            out += _spec_function(functions[spec], spec)
    out += [
        "_vmbuilder_spec() {  # HV DISTRO|COMMAND OPTION: sets opts, pos, and kind, wl, info for OPTION's value",
        '    case "$1 $2" in',
        *(f'        {shlex.quote(f"{a} {b}")}) {functions[spec]} "$3" ;;' for (a, b), spec in data.specs.items()),
        "        *) return 1 ;;",
        "    esac",
        "}",
        "",
        "_vmbuilder_second() {  # HV: the words after it, distros and the hypervisor's commands",
        f"    wl={_q(data.distros)}",
        '    case "$1" in',
        *(f"        {shlex.quote(hv)}) wl+={shlex.quote(' ' + ' '.join(cmds))} ;;" for hv, cmds in commands),
        "    esac",
        "}",
        "",
        "_vmbuilder_first() {  # the global flags and the hypervisors",
        f"    opts={_q(data.global_flags)}",
        f"    wl={_q(data.hypervisors)}",
        "}",
        "",
        BODY,
    ]
    return "\n".join(out)


HEADER = """\
# bash completion for vmbuilder (vmbuilder-lxc)                    -*- shell-script -*-
# Generated from the settings table by `python3 -m vmbuilder_lxc.completion`; do not edit.
# Works with bash-completion (loaded on demand) and without it (sourced directly).
"""

BODY = r"""_vmbuilder_distro_info() {  # CSV OLDEST SKIP...: distro-info-data's series from OLDEST on, not in wl or SKIP
    local csv=${_vmbuilder_distro_info_dir:-/usr/share/distro-info}/$1.csv oldest=$2
    [[ -r $csv ]] || return 0
    shift 2
    awk -F, -v oldest="$oldest" -v skip=" $* $wl " '
        function older(v, o,   a, b, n, i) {  # version v before o; no version (sid) is the newest
            if (v == "") return 0
            n = split(v, a, "[.]"); split(o, b, "[.]")
            for (i = 1; i <= n || (i in b); i++)
                if (a[i] + 0 != b[i] + 0) return a[i] + 0 < b[i] + 0
            return 0
        }
        NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
        {
            v = $col["version"]; sub(/ .*/, "", v); s = $col["series"]
            if (s != "" && !older(v, oldest) && index(skip, " " s " ") == 0) print s
        }' "$csv" 2>/dev/null
}

_vmbuilder_files() {  # [-d]: files (or directories) matching cur
    if declare -F _filedir >/dev/null; then
        _filedir "$@"
        return
    fi
    compopt -o filenames 2>/dev/null
    mapfile -t COMPREPLY < <(compgen "${1:--f}" -- "$cur")
}

_vmbuilder_value() {  # KIND: complete cur as a value of that kind (words in wl, info for suites)
    local head= w
    case $1 in
        dir) _vmbuilder_files -d ;;
        file) _vmbuilder_files ;;
        choice) mapfile -t COMPREPLY < <(compgen -W "$wl" -- "$cur") ;;
        list)  # comma separated: complete the last item, keep the ones before it
            [[ $cur == *,* ]] && head=${cur%,*},
            COMPREPLY=()
            for w in $wl; do
                [[ ,$head == *,$w,* || $w != "${cur##*,}"* ]] || COMPREPLY+=("$head$w")
            done
            ;;
        suite)
            wl+=" $(_vmbuilder_distro_info $info)"
            mapfile -t COMPREPLY < <(compgen -W "$wl" -- "$cur")
            ;;
    esac
}

_vmbuilder_help_flags() {  # HV DISTRO OPTION: a pair from a plugin installed later, from its --help (once)
    local key="$1 $2" line flag meta
    if [[ -z ${_vmbuilder_help_cache[$key]+set} ]]; then
        local text=
        while IFS= read -r line; do
            [[ $line == "  -"* ]] || continue
            line=${line#  }
            line=${line%%  *}
            text+=${line//, /$'\n'}$'\n'
        done < <(command vmbuilder "$1" "$2" --help 2>/dev/null)
        _vmbuilder_help_cache[$key]=$text
    fi
    while read -r flag meta; do
        [[ -n $flag ]] || continue
        opts+=" $flag"
        [[ $flag == "$3" && -n $meta ]] || continue
        case $meta in
            *DIR* | DEST) kind=dir ;;
            *FILE* | *PATH* | *SCRIPT*) kind=file ;;
            "{"*) kind=choice wl=${meta//[\{\},]/ } ;;
            *) kind=text ;;
        esac
    done <<<"${_vmbuilder_help_cache[$key]}"
}

_vmbuilder_words() {  # without bash-completion: words/cword/cur/prev as `_init_completion -s` sets them
    local i
    words=() cword=0
    for ((i = 0; i < ${#COMP_WORDS[@]}; i++)); do
        if ((i > 1)) && [[ ${COMP_WORDS[i]} == = || ${COMP_WORDS[i - 1]} == = ]] && [[ ${words[-1]} == -* ]]; then
            words[-1]+=${COMP_WORDS[i]}
        else
            words+=("${COMP_WORDS[i]}")
        fi
        ((i == COMP_CWORD)) && cword=$((${#words[@]} - 1))
    done
    cur=${words[cword]} prev=${words[cword - 1]}
    if [[ $cur == --?*=* ]]; then
        prev=${cur%%=*} cur=${cur#*=} split=true
    fi
}

_vmbuilder() {
    local cur prev words cword split=false
    if declare -F _init_completion >/dev/null; then
        _init_completion -s || return
    else
        _vmbuilder_words
    fi
    COMPREPLY=()
    local i w hv= second= npos=0 opts= pos= kind= wl= info=
    for ((i = 1; i < cword && npos < 2; i++)); do
        w=${words[i]}
        case $w in
            -c | --config) ((i++)) ;;
            -*) ;;
            *) if ((npos++ == 0)); then hv=$w; else second=$w; fi ;;
        esac
    done
    if ((npos < 2)); then  # HYPERVISOR, then DISTRO or COMMAND; global flags before them
        _vmbuilder_first
        case $prev in
            -c | --config) _vmbuilder_files; return ;;
        esac
        [[ $cur == -* ]] && wl=$opts
        ((npos == 1)) && [[ $cur != -* ]] && _vmbuilder_second "$hv"
        mapfile -t COMPREPLY < <(compgen -W "$wl" -- "$cur")
        return
    fi
    _vmbuilder_spec "$hv" "$second" "$prev" || _vmbuilder_help_flags "$hv" "$second" "$prev"
    if [[ -n $kind ]]; then  # prev takes a value
        _vmbuilder_value "$kind"
    elif [[ $split == false ]]; then
        if [[ $cur == -* || ( -z $cur && -z $pos ) ]]; then
            mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
        elif [[ -n $pos ]]; then
            _vmbuilder_value "$pos"
        fi
    fi
}

declare -gA _vmbuilder_help_cache=()
complete -F _vmbuilder vmbuilder
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args:
        print("usage: python3 -m vmbuilder_lxc.completion > vmbuilder.bash-completion", file=sys.stderr)
        return 2
    sys.stdout.write(bash_script(collect(discover())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
