"""A tiny reflector and client that show what a NAT does to a flow (run inside lab hosts).

    python -m tests.netlab.probe serve PORT...           # UDP and TCP: reply "<ip>:<port>" seen
    python -m tests.netlab.probe udp BIND_PORT HOST:PORT...   # print JSON {dest: seen or null}
    python -m tests.netlab.probe tcp HOST:PORT           # print JSON {dest: seen or null}

The reflector answers each datagram from the port it arrived on with the source address it
saw, which is the NAT mapping (RFC 4787 §4.1 tests mapping behaviour the same way: one
internal port, several external destinations, compare the mapped ports).
"""

from __future__ import annotations

import json
import selectors
import socket
import sys

TIMEOUT = 1.0  # replies inside the lab take milliseconds


def serve(ports: list[int]) -> None:
    sel = selectors.DefaultSelector()
    for port in ports:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("0.0.0.0", port))
        sel.register(udp, selectors.EVENT_READ, "udp")
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind(("0.0.0.0", port))
        tcp.listen()
        sel.register(tcp, selectors.EVENT_READ, "tcp")
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if key.data == "udp":
                _, (ip, port) = sock.recvfrom(2048)
                sock.sendto(f"{ip}:{port}".encode(), (ip, port))
            else:
                conn, (ip, port) = sock.accept()
                with conn:
                    conn.sendall(f"{ip}:{port}".encode())


def _dest(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def udp(bind_port: int, dests: list[str]) -> dict[str, str | None]:
    seen: dict[str, str | None] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("0.0.0.0", bind_port))
        s.settimeout(TIMEOUT)
        for dest in dests:
            s.sendto(b"probe", _dest(dest))
            try:
                data, _ = s.recvfrom(2048)
                seen[dest] = data.decode()
            except TimeoutError:
                seen[dest] = None
    return seen


def tcp(dest: str) -> dict[str, str | None]:
    try:
        with socket.create_connection(_dest(dest), timeout=TIMEOUT) as s:
            return {dest: s.recv(2048).decode()}
    except OSError:
        return {dest: None}


def main(argv: list[str]) -> None:
    match argv:
        case ["serve", *ports]:
            serve([int(p) for p in ports])
        case ["udp", bind_port, *dests]:
            print(json.dumps(udp(int(bind_port), dests)))
        case ["tcp", dest]:
            print(json.dumps(tcp(dest)))
        case _:
            sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
