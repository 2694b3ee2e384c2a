"""Where the processes of a several-process run meet, and over which network they talk.

A run of several processes starts as `python -m studio.runs.rendezvous RUN_DIR <accelerate launch args>`:
accelerate's own launcher (its config, its environment for DDP, FSDP and DeepSpeed, torch's elastic agent
that starts and watches the ranks), with one thing changed: the rendezvous store. torch's launchers serve it
on every interface of the main machine, unauthenticated; studio serves it on a socket it binds itself
(`TCPStore(master_listen_fd=...)`):

- a one-machine run on 127.0.0.1, on a free port;
- the main machine of a multi-machine job on its address toward the others (`main_address` as this machine
  resolves it), on `main_port`; the other machines only connect to it.

Every rank is a client of that one store (torch's agent-store mode), so nothing else listens on every
interface. The collectives (gloo on the CPU, NCCL's bootstrap on GPUs) go over one interface, chosen here:
the one that routes to `main_address` (loopback for a one-machine run), or `hardware.network_interface`,
unless the user set GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME. Without that gloo takes the address this
machine's hostname resolves to, which /etc/hosts often maps to 127.0.0.1, and the other machine cannot
reach it.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from datetime import timedelta
from pathlib import Path

import psutil

from studio.planning.layout import Layout

BACKEND = "studio"
RENDEZVOUS_TIMEOUT_S = 900  # how long machines wait for each other to start (as torch's static rendezvous)
INTERFACE_VARIABLES = ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")


class LaunchError(Exception):
    """The job cannot meet as configured; the message names the setting and what to set."""


def local_addresses() -> dict[str, str]:
    """This machine's IPv4 and IPv6 addresses, each with its interface."""
    found = {}
    for name, addresses in psutil.net_if_addrs().items():
        for a in addresses:
            if a.family in (socket.AF_INET, socket.AF_INET6):
                found.setdefault(a.address.split("%")[0], name)
    return found


def resolve(address: str) -> list[str]:
    try:
        return list(dict.fromkeys(info[4][0] for info in socket.getaddrinfo(address, None, type=socket.SOCK_STREAM)))
    except (OSError, UnicodeError):
        return []


def is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def route_interface(address: str) -> tuple[str, str] | None:
    """(interface, local address) through which this machine reaches `address`; None when it cannot."""
    mine = local_addresses()
    for ip in resolve(address):
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((ip, 9))  # a UDP connect sends nothing: it only asks the kernel for the route
                local = s.getsockname()[0]
        except OSError:
            continue
        name = mine.get(local)
        if name:
            return name, local
    return None


def loopback_interface() -> str:
    return local_addresses().get("127.0.0.1", "lo")


def network_env(layout: Layout, environ: dict[str, str]) -> tuple[dict[str, str], str]:
    """GLOO_SOCKET_IFNAME and NCCL_SOCKET_IFNAME for the job (what the user set is kept), and a line saying
    which interface and why."""
    chosen = {k: environ[k] for k in INTERFACE_VARIABLES if environ.get(k)}
    if len(chosen) == len(INTERFACE_VARIABLES):
        return {}, f"network: {', '.join(f'{k}={v}' for k, v in chosen.items())} (set by you)"
    if layout.network_interface:
        interface, why = layout.network_interface, "hardware.network_interface"
        if interface not in psutil.net_if_addrs():
            raise LaunchError(f"hardware.network_interface = \"{interface}\": this machine has no such interface; "
                              f"it has {', '.join(sorted(psutil.net_if_addrs()))}")
    elif layout.num_machines <= 1:
        interface, why = loopback_interface(), "one machine: its processes talk over loopback"
    else:
        route = route_interface(layout.main_address)
        if route is None:
            raise LaunchError(f"hardware.main_address = \"{layout.main_address}\" cannot be reached from this "
                              "machine (it does not resolve, or no interface routes to it): set it to the main "
                              "machine's address on the cluster network, or set hardware.network_interface")
        interface, why = route[0], f"it routes to main_address {layout.main_address} (this machine is {route[1]} there)"
    extra = {k: interface for k in INTERFACE_VARIABLES if k not in chosen}
    return extra, f"network: {', '.join(f'{k}={v}' for k, v in {**chosen, **extra}.items())}: {why}"


def store_address(layout: Layout) -> str:
    """The address the main machine serves the rendezvous on ("" for every interface, said in the log)."""
    if layout.num_machines <= 1:
        return "127.0.0.1"
    ips = resolve(layout.main_address)
    mine = local_addresses()
    local = [ip for ip in ips if ip in mine]
    if not local:
        return ""  # main_address is not an address of this machine (a NAT, a DNS name for a gateway)
    literal = layout.main_address == "localhost" or is_loopback(layout.main_address)
    if all(is_loopback(ip) for ip in local) and not literal:
        others = ", ".join(f"{ip} ({name})" for ip, name in mine.items() if not is_loopback(ip)) or "none"
        raise LaunchError(f"hardware.main_address = \"{layout.main_address}\" resolves to {local[0]} (loopback) on "
                          "this machine (an /etc/hosts entry), so the other machines could not reach the "
                          "rendezvous: set it to this machine's address on the cluster network (this machine has: "
                          f"{others})")
    return local[0]


def listener(address: str, port: int) -> socket.socket:
    """A socket bound to (address, port) for the store to serve on."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
    except OSError as e:
        sock.close()
        where = f"{address or 'every interface'}:{port}"
        raise LaunchError(f"cannot listen on {where} for the job's rendezvous: {e.strerror or e}; choose another "
                          "hardware.main_port (another job may hold this one)") from None
    return sock


def register_backend(layout: Layout, address: str, port: int, sock: socket.socket | None) -> None:
    """torch's elastic agent asks its rendezvous registry for the `studio` backend: a static rendezvous (ranks by
    machine) whose store the main machine serves on `sock`."""
    from torch.distributed import PrefixStore, TCPStore
    from torch.distributed.elastic.rendezvous import (RendezvousHandler, RendezvousInfo, RendezvousParameters,
                                                      RendezvousStoreInfo, rendezvous_handler_registry)

    class BoundRendezvous(RendezvousHandler):
        def __init__(self, params: RendezvousParameters):
            self.run_id, self.world = params.run_id, layout.num_machines
            self.store: TCPStore | None = None

        def get_backend(self) -> str:
            return BACKEND

        @property
        def use_agent_store(self) -> bool:
            return True  # every rank is a client of this store: nothing else listens

        def next_rendezvous(self) -> RendezvousInfo:
            if self.store is None:
                timeout = timedelta(seconds=RENDEZVOUS_TIMEOUT_S)
                if sock is not None:
                    self.store = TCPStore(address or layout.main_address, port, self.world, True, timeout,
                                          multi_tenant=True, master_listen_fd=sock.fileno())
                else:
                    self.store = TCPStore(address, port, self.world, False, timeout, multi_tenant=True)
            return RendezvousInfo(PrefixStore(self.run_id, self.store), layout.machine_rank, self.world,
                                  RendezvousStoreInfo(address or layout.main_address, port))

        def is_closed(self) -> bool:
            return False

        def set_closed(self) -> None:
            pass

        def num_nodes_waiting(self) -> int:
            return 0

        def get_run_id(self) -> str:
            return self.run_id

        def shutdown(self) -> bool:
            return True

    rendezvous_handler_registry.register(BACKEND, BoundRendezvous)


def launch_job(run_dir: Path, accelerate_args: list[str]) -> int:
    from studio.runs.launcher import read_layout

    layout = read_layout(run_dir)
    if layout is None:
        print(f"{run_dir} has no launch.json: not a studio run folder", file=sys.stderr)
        return 2
    try:
        env, said = network_env(layout, dict(os.environ))
        if layout.machine_rank == 0:
            address = store_address(layout)
            sock = listener(address, 0 if layout.num_machines <= 1 else layout.main_port)
            port = sock.getsockname()[1]
            print(f"rendezvous: listening on {address or 'every interface'}:{port}"
                  + ("" if address else f" ({layout.main_address} is not an address of this machine; keep the "
                                        "port inside the cluster's network)"), flush=True)
        else:
            address, sock, port = layout.main_address, None, layout.main_port
    except LaunchError as e:  # before any rank starts: the run's record says what to set
        from studio.runs.events import End, append_event
        from studio.runs.folder import Run
        from studio.runs.status import RunStatus

        print(f"cannot start the job: {e}", file=sys.stderr, flush=True)
        append_event(Run(run_dir).events_path, End(status=RunStatus.FAILED, error_kind="config", message=str(e),
                                                   advice="change what it names and resume the run"))
        return 2
    print(said, flush=True)
    os.environ.update(env)
    register_backend(layout, address, port, sock)
    from accelerate.commands.launch import launch_command, launch_command_parser

    args = launch_command_parser().parse_args(
        ["--rdzv_backend", BACKEND, "--main_process_port", str(port), *accelerate_args])
    launch_command(args)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 2:
        return launch_job(Path(argv[0]).resolve(), argv[1:])
    print("usage: python -m studio.runs.rendezvous RUN_DIR ACCELERATE_LAUNCH_ARGS... (started by studio)",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
