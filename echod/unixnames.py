"""``@NAME`` in a ``unix:`` endpoint string: a socket in Linux's abstract namespace.

ss, socat, systemd (C{ListenStream=@NAME}) and OpenBSD's nc write an abstract
socket's name with a leading C{@}. Twisted takes it for a file path and
creates a file called C{@NAME} in the current directory. echod turns the
C{@} into the NUL byte that marks an abstract name (Twisted then binds it as
one), and a listener takes no lock file: an abstract name has no directory to
put one in, and the kernel refuses a second listener on the same name anyway.
"""

from __future__ import annotations

from echod.reuseport import raw_fields


def path_field(fields: list[str]) -> tuple[int, str, str] | None:
    """Where the fields of a C{unix:} endpoint string (after C{unix:}) name the
    socket path: (index, C{"address="} or C{"path="} or C{""}, the path as
    written); None if they do not."""
    for index, field in enumerate(fields):
        name, equals, value = field.partition("=")
        if not equals:  # the path, given by position
            return index, "", field
        if name in ("address", "path"):  # by name: server, client
            return index, f"{name}=", value
    return None


def abstract_unix(description: str, server: bool) -> str:
    """C{description} with an C{@NAME} socket path made abstract; any other
    endpoint string as it is."""
    kind, colon, rest = description.partition(":")
    if kind != "unix" or not colon:
        return description
    fields = raw_fields(rest)
    found = path_field(fields)
    if found is None:
        return description
    index, prefix, path = found
    if not path.startswith("@") or path == "@":
        return description
    fields[index] = f"{prefix}\0{path[1:]}"
    if server and not any(f.startswith("lockfile=") for f in fields):
        fields.append("lockfile=0")
    return "unix:" + ":".join(fields)


def shown_unix_path(path: str) -> str:
    """A UNIX socket path as messages write it: an abstract name (a leading
    NUL) as C{@NAME}, as ss, socat and systemd do."""
    return "@" + path[1:] if path.startswith("\0") else path
