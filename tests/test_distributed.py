"""Several processes per run through accelerate: layout, config, and a real 2-process DDP run on CPU (gloo)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import demo_rows, studio, write_jsonl, write_profile
from studio.planning.layout import LayoutError, accelerate_config, check_launchable
from studio.planning.plan import plan_run
from studio.runs.events import Start, Step, load_timeline, read_events
from studio.hardware import GpuInfo, Inventory
from studio.profiles.profile import profile_from_dict
from test_training_runs import processes_working_on, run_json, steps_of
from waiting import wait_for


def inventory(*free: float) -> Inventory:
    return Inventory([GpuInfo(index=i, name="NVIDIA A100-SXM4-80GB", memory_total_gib=80, memory_free_gib=f, bf16=True)
                      for i, f in enumerate(free)])


def plan_layout(profile, inv):
    layout = plan_run(profile, inv).layout
    check_launchable(layout, inv)
    return layout


def profile(**hardware) -> object:
    return profile_from_dict({"model": {"name": "meta-llama/Llama-3.1-8B"}, "data": {"path": "x.jsonl"},
                              "method": {"type": hardware.pop("method", "lora")}, "hardware": hardware})


def test_layout_choices() -> None:
    assert plan_layout(profile(), inventory(80)).strategy == "none"
    two = plan_layout(profile(), inventory(80, 80))
    assert (two.processes, two.strategy, two.gpu_indices) == (2, "ddp", (0, 1))  # LoRA fits one card: DDP
    assert plan_layout(profile(method="full"), inventory(80, 80)).strategy == "fsdp"
    assert plan_layout(profile(), inventory(12, 12)).strategy == "fsdp"  # does not fit one card
    assert plan_layout(profile(gpus="1"), inventory(80, 40, 80)).gpu_indices == (1,)  # smallest card that is asked
    assert plan_layout(profile(gpus="0,2"), inventory(80, 80, 80)).gpu_indices == (0, 2)
    with pytest.raises(LayoutError, match="hardware.gpus: asks for 4 GPUs"):
        plan_layout(profile(gpus="4"), inventory(80, 80))
    with pytest.raises(LayoutError, match="DeepSpeed"):
        plan_layout(profile(strategy="deepspeed-zero3"), inventory(80, 80))
    cpu = plan_layout(profile(gpus="2"), Inventory([]))
    assert (cpu.processes, cpu.strategy) == (2, "ddp")


def test_accelerate_config_per_strategy() -> None:
    fsdp = accelerate_config(plan_layout(profile(method="full", num_machines=2, machine_rank=1,
                                                 main_address="10.0.0.1"), inventory(80, 80)))
    assert fsdp["distributed_type"] == "FSDP" and fsdp["num_processes"] == 4 and fsdp["machine_rank"] == 1
    assert fsdp["main_process_ip"] == "10.0.0.1" and fsdp["fsdp_config"]["fsdp_use_orig_params"] is True
    ddp = accelerate_config(plan_layout(profile(), inventory(80, 80)))
    assert ddp["distributed_type"] == "MULTI_GPU" and ddp["gpu_ids"] == "0,1"


def test_multi_node_needs_the_main_address() -> None:
    from studio.profiles.profile import ProfileError

    with pytest.raises(ProfileError, match="hardware.main_address"):
        profile(num_machines=2)


@pytest.mark.slow
def listening_addresses(pids: list[int]) -> list[str]:
    """The local address:port of every listening TCP socket these processes hold, from `ss -ltnp` (psutil's
    view of the same table where iproute2 is not installed)."""
    import shutil

    if shutil.which("ss") is None:
        import psutil

        return [f"{c.laddr.ip}:{c.laddr.port}" for c in psutil.net_connections(kind="tcp")
                if c.status == psutil.CONN_LISTEN and c.pid in pids]
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        owners = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        if owners & set(pids):
            found.append(line.split()[3])
    return found


def test_two_process_ddp_run_stop_resume_and_kill(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "chat.jsonl", demo_rows(160))
    p = write_profile(tmp_path / "ddp.toml", data, train={"max_steps": 400, "save_steps": 50},
                      hardware={"gpus": "2"})
    run_dir = Path(run_json(studio("run", str(p), "--detach", "--json"))["dir"])
    assert (run_dir / "accelerate_config.yaml").is_file()
    wait_for(lambda: len(steps_of(run_dir)) >= 4, what="4 steps")
    assert len([pid for pid in processes_working_on(run_dir)]) >= 3  # launcher + 2 ranks
    # What the job listens on, as `ss -ltnp` shows it: the rendezvous and gloo's sockets, on loopback only.
    listening = listening_addresses(processes_working_on(run_dir))
    assert listening and all(a.startswith(("127.", "[::1]", "::1")) for a in listening), listening
    stop = studio("stop", run_dir.name)
    assert stop.returncode == 0, stop.stderr
    assert not processes_working_on(run_dir)
    tl = load_timeline(run_dir)
    stopped_at = tl.end.step
    assert tl.end.status == "stopped" and (run_dir / "checkpoints" / f"checkpoint-{stopped_at}").is_dir()
    assert tl.start.trainable_params > 0
    # one writer: every event line parses, and each step appears once per attempt
    first = [e.step for e in read_events(run_dir / "events.jsonl") if isinstance(e, Step)]
    assert len(first) == len(set(first))

    resumed = studio("resume", run_dir.name, "--detach", "--json")
    assert resumed.returncode == 0, resumed.stderr
    wait_for(lambda: max((s.step for s in steps_of(run_dir)), default=0) > stopped_at + 2, what="resumed steps")
    events = read_events(run_dir / "events.jsonl")
    second_start = [i for i, e in enumerate(events) if isinstance(e, Start)][1]
    assert [e.step for e in events[second_start:] if isinstance(e, Step)][0] == stopped_at + 1
    kill = studio("stop", run_dir.name, "--force")
    assert kill.returncode == 0, kill.stderr
    wait_for(lambda: not processes_working_on(run_dir), what="every rank gone after the force stop",
             state=lambda: str(processes_working_on(run_dir)), timeout=60)
    assert json.loads(studio("runs", "--json").stdout)[-1]["status"] == "stopped"


def test_the_machines_of_a_job_resume_from_one_step_or_refuse_naming_the_machine() -> None:
    from studio.trainer.job_resume import Holding, JobResumeError, agreed_step

    main = Holding(0, True, (5, 10, 15), "/m0/run")
    assert agreed_step([main, Holding(1, True, (5, 10, 15), "/m1/run")]) == (15, "")
    # Machine 1 was killed while saving step 15: the job goes back to the newest step both hold, and says so.
    step, note = agreed_step([main, Holding(1, True, (5, 10), "/m1/run")])
    assert step == 10 and "machine 1 (/m1/run) has 5, 10" in note and "resumes from step 10" in note
    # Nothing in common: every machine refuses, naming the one that lacks it and what to copy.
    with pytest.raises(JobResumeError, match=r"machine 1 \(/m1/run\) has none.*checkpoint-15"):
        agreed_step([main, Holding(1, True, (), "/m1/run")])
    # The main machine decides whether this is a resume: started afresh, every machine starts afresh.
    assert agreed_step([Holding(0, False, (), "/m0/run"), Holding(1, True, (5,), "/m1/run")]) == (None, "")


def non_loopback_address() -> tuple[str, str] | None:
    """(interface, IPv4 address) of this machine off loopback, if it has one."""
    import ipaddress
    import socket

    import psutil

    for name, addresses in psutil.net_if_addrs().items():
        for a in addresses:
            if a.family == socket.AF_INET and not ipaddress.ip_address(a.address).is_loopback:
                return name, a.address
    return None


def test_the_job_talks_over_the_interface_that_reaches_the_main_machine() -> None:
    from studio.planning.layout import Layout
    from studio.runs.rendezvous import LaunchError, network_env, store_address

    one = Layout(processes=2, strategy="ddp", gpu_indices=())
    env, said = network_env(one, {})
    assert env == {"GLOO_SOCKET_IFNAME": "lo", "NCCL_SOCKET_IFNAME": "lo"} and "loopback" in said
    assert store_address(one) == "127.0.0.1"
    # What the user set is kept; the other variable still follows the route.
    env, said = network_env(one, {"GLOO_SOCKET_IFNAME": "eth9"})
    assert env == {"NCCL_SOCKET_IFNAME": "lo"} and "GLOO_SOCKET_IFNAME=eth9" in said
    with pytest.raises(LaunchError, match=r'hardware.network_interface = "nope0".*has'):
        network_env(Layout(processes=1, strategy="ddp", gpu_indices=(), num_machines=2, main_address="127.0.0.1",
                           network_interface="nope0"), {})
    with pytest.raises(LaunchError, match="hardware.main_address"):
        network_env(Layout(processes=1, strategy="ddp", gpu_indices=(), num_machines=2,
                           main_address="no-such-host.invalid"), {})
    found = non_loopback_address()
    if found is None:
        pytest.skip("this machine has no address off loopback")
    interface, address = found
    two = Layout(processes=1, strategy="ddp", gpu_indices=(), num_machines=2, main_address=address)
    assert network_env(two, {})[0] == {"GLOO_SOCKET_IFNAME": interface, "NCCL_SOCKET_IFNAME": interface}
    assert store_address(two) == address  # the main machine serves on that address, not on every interface


def test_a_main_address_that_resolves_to_loopback_here_is_refused_naming_the_addresses_to_use() -> None:
    import ipaddress
    import socket

    from studio.planning.layout import Layout
    from studio.runs.rendezvous import LaunchError, resolve, store_address

    name = socket.gethostname()
    if not resolve(name) or not all(ipaddress.ip_address(ip).is_loopback for ip in resolve(name)):
        pytest.skip(f"this machine's name {name} does not resolve to loopback (no /etc/hosts entry for it)")
    found = non_loopback_address()
    layout = Layout(processes=1, strategy="ddp", gpu_indices=(), num_machines=2, main_address=name)
    with pytest.raises(LaunchError, match=f'main_address = "{name}" resolves to 127.*loopback') as refused:
        store_address(layout)
    if found:
        assert found[1] in str(refused.value)
    # Two processes on one machine named by their loopback address are fine: that is what they are.
    assert store_address(Layout(processes=1, strategy="ddp", gpu_indices=(), num_machines=2,
                                main_address="127.0.0.1")) == "127.0.0.1"
