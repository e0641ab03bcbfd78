"""The device test: ptxd for aarch64 booted under qemu-system-aarch64, end to end.

Inside the guest (tests/qemu/init): Debian's arm64 kernel, vivid as /dev/video0 (a real
V4L2 capture driver), virtio-gpu as /dev/fb0, a PCI 16550 UART as /dev/ttyS0, and ptxd
started from the qemu-virt board profile with two real radiographs in its watch folder.

From the host, this test:
- reads every frame on the second serial line (CRC checked) and ACKs the results;
- checks both radiographs are analyzed, with the probabilities the x86 build gives for the
  same files (tract's aarch64 int8 kernels against its x86 ones);
- checks vivid's test pattern was captured and analyzed (it is not a radiograph: the point
  is the capture path), and that TRIGGER captures another frame;
- takes a QEMU monitor screendump after each result and checks the banner's colour
  matches the verdict (its own, or a later result's when the next one is already drawn by
  the screendump) and the picture is not blank;
- closes the line, reopens it, and checks REPLAY and the resend of an unacknowledged result;
- reads the alert lines (the virt machine's PL061 GPIO, through the guest's debugfs): the
  LED goes high on the positive and low once the host ACKs it; then presses the ACK button
  (QEMU's system_powerdown pulses the power-button line) and checks the idle screen
  returns.

Run by ./test.sh after the aarch64 build:
    PTXD_AARCH64=target/aarch64-unknown-linux-gnu/release/ptxd pytest tests/qemu
On failure the guest's console log is printed.
"""

import json
import os
import re
import socket
import subprocess
import time
import zlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
# a positive with one localised region (PNG) and a clear negative (JPEG DICOM), by the x86 build
INPUTS = [
    SHARED / "real-dev" / "images" / "1.2.276.0.7230010.3.1.4.8323329.1080.1517875166.235178.png",
    SHARED / "dicom" / "ID_82715f640.dcm",
]
# tract's int8 kernels agree across architectures (PNG: 1e-7 measured). JPEG DICOMs do not
# decode identically: jpeg-decoder uses SSSE3 on x86 and scalar code on aarch64 (0.04 apart
# on ID_2ccfe5000.dcm), hence the wider band there.
# aarch64 against x86 on the same file: the PNG gives both the same pixels, and the int8
# kernels (NEON against x86) still round differently: 0.0045 measured on the per-channel
# models; the JPEG DICOM also decodes a grey level apart here and there (SSSE3 against scalar
# IDCT), which these models amplify: the manifest's classifier tolerance covers it.
TOLERANCE = {".png": 0.02, ".dcm": 0.1}
SLATE = (40, 60, 90)  # the idle screen's banner
BANNER = {
    "positive": (220, 30, 30),
    "indeterminate": (230, 150, 0),
    "negative": (20, 140, 60),
    "not_chest_radiograph": (110, 60, 170),  # refused by the lung-field check: no alarm
    None: (220, 30, 30),  # a failed input: the red error screen
}
# whole test under the 10 minutes the issue allows on 2 cores; emulated inference is slow
DEADLINE = 480


class Line:
    """The host end of the guest's /dev/ttyS0 (a QEMU socket chardev)."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = None
        self.pending = b""
        self.frames = []
        self.open()

    def open(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(self.path))
        self.sock.settimeout(0.5)
        self.pending = b""

    def close(self):
        self.sock.close()

    def say(self, text: str):
        self.sock.sendall(text.encode() + b"\n")

    def poll(self):
        """Read what is there; return the new frames (each CRC-checked)."""
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return []
        assert data, "the guest closed the line"
        self.pending += data
        new = []
        while b"\n" in self.pending:
            raw, self.pending = self.pending.split(b"\n", 1)
            body, crc = raw.decode().rsplit("*", 1)
            assert f"{zlib.crc32(body.encode()):08X}" == crc, f"bad CRC: {raw!r}"
            frame = json.loads(body)
            assert frame["v"] == 2
            new.append(frame)
        self.frames += new
        return new


class Guest:
    def __init__(self, tmp: Path, binary: Path):
        self.tmp = tmp
        subprocess.run(
            [REPO / "tests/qemu/guest.sh", binary, tmp, *INPUTS], check=True, timeout=300
        )
        self.console = tmp / "console.log"
        self.monitor_path = tmp / "monitor.sock"
        self.line_path = tmp / "line.sock"
        self.qemu = subprocess.Popen(
            [
                "qemu-system-aarch64",
                "-M", "virt", "-cpu", "cortex-a57", "-smp", "2", "-m", "1024",
                "-nic", "none", "-display", "none",
                "-kernel", tmp / "vmlinuz", "-initrd", tmp / "initrd.gz",
                "-append", "console=ttyAMA0 quiet",
                "-serial", f"file:{self.console}",
                "-device", "virtio-gpu-pci",
                "-chardev", f"socket,id=line,path={self.line_path},server=on,wait=off",
                "-device", "pci-serial,chardev=line",
                "-monitor", f"unix:{self.monitor_path},server=on,wait=off",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(100):
            if self.line_path.exists() and self.monitor_path.exists():
                break
            time.sleep(0.1)

    def monitor(self, command: str):
        """Send one QEMU monitor command."""
        mon = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        mon.connect(str(self.monitor_path))
        mon.sendall(f"{command}\n".encode())
        time.sleep(0.3)
        mon.close()

    def screendump(self, name: str):
        """The guest's screen as (width, height, RGB bytes), through the QEMU monitor."""
        path = self.tmp / f"{name}.ppm"
        self.monitor(f"screendump {path}")
        for _ in range(50):
            if path.exists() and path.stat().st_size > 0:
                break
            time.sleep(0.1)
        time.sleep(0.3)
        data = path.read_bytes()
        # binary PPM: "P6\n<w> <h>\n255\n" then RGB
        parts = data.split(b"\n", 3)
        assert parts[0] == b"P6", parts[0]
        w, h = map(int, parts[1].split())
        return w, h, parts[3]

    def log(self) -> str:
        return self.console.read_text(errors="replace") if self.console.exists() else ""

    def stop(self):
        self.qemu.kill()
        self.qemu.wait()


def pixel(shot, x, y):
    w, _, rgb = shot
    i = 3 * (y * w + x)
    return tuple(rgb[i : i + 3])


def host_probabilities():
    """What the x86 build says of the same inputs."""
    out = subprocess.run(
        [REPO / "target/debug/ptxd", "--manifest", REPO / "models/manifest.toml",
         "analyze", "--json", *INPUTS],
        check=False, capture_output=True, text=True, timeout=300,
    )
    lines = [json.loads(l) for l in out.stdout.splitlines()]
    found = {Path(l["file"]).name: l for l in lines}
    assert sorted(found) == sorted(f.name for f in INPUTS), f"x86 analyze gave {out.stdout!r} {out.stderr!r}"
    return found


@pytest.fixture
def guest(tmp_path):
    binary = Path(os.environ.get("PTXD_AARCH64", REPO / "target/aarch64-unknown-linux-gnu/release/ptxd"))
    assert binary.exists(), f"{binary}: build it first (cargo build --release --target aarch64-unknown-linux-gnu)"
    for f in INPUTS:
        assert f.exists(), f"{f}: the test needs ../shared/data"
    g = Guest(tmp_path, binary)
    yield g
    g.stop()


def test_ptxd_in_an_arm64_guest_captures_analyzes_shows_and_reports(guest, request):
    started = time.monotonic()
    shots = {}
    acked = set()
    held_back = None

    def wait(what, done):
        nonlocal held_back
        while not done():
            assert time.monotonic() - started < DEADLINE, f"timed out waiting for {what}"
            assert guest.qemu.poll() is None, "QEMU exited"
            for frame in line.poll():
                if frame["type"] == "result" and frame["seq"] not in shots:
                    # the screen shows a result before its frame is sent; virtio-gpu's fbdev
                    # copies mmap writes to the host in deferred batches (50 ms): let it
                    time.sleep(1.0)
                    shots[frame["seq"]] = guest.screendump(f"result-{frame['seq']}")
                    if held_back is None and frame["seq"] > 1:
                        held_back = frame["seq"]  # never ACKed before the reopen
                if frame["type"] == "result" and frame["seq"] != held_back:
                    line.say(f"ACK {frame['seq']}")
                    acked.add(frame["seq"])

    try:
        line = Line(guest.line_path)
        results = lambda: {f["seq"]: f for f in line.frames if f["type"] == "result"}
        wait("hello", lambda: any(f["type"] == "hello" for f in line.frames))
        hello = next(f for f in line.frames if f["type"] == "hello")
        assert hello["device"] == "qemu-virt"
        assert hello["last_seq"] == 0

        # both radiographs and at least one captured frame
        def sources():
            return [r["source"] for r in results().values()]

        wait(
            "two radiographs and a capture",
            lambda: sum(s.startswith("watch:") for s in sources()) == 2
            and any(s.startswith("capture:capture-video0-") for s in sources()),
        )

        # the radiographs: the x86 build's numbers, within the manifest's tolerance
        expected = host_probabilities()
        compared = 0
        for r in results().values():
            name = r["source"].split(":", 1)[1]
            if name in expected:
                assert r["error"] is None and r["error_kind"] is None, r
                assert r["needs_attention"] == (r["verdict"] != "negative"), r
                assert r["verdict"] == expected[name]["verdict"], (r, expected[name])
                band = TOLERANCE[Path(name).suffix]
                assert abs(r["probability"] - expected[name]["probability"]) <= band, (r, expected[name])
                assert len(r["findings"]) == len(expected[name]["findings"]), (r, expected[name])
                compared += 1
        assert compared == len(INPUTS), compared
        # the captured test pattern went the whole way: decoded from V4L2, analyzed, journaled,
        # and refused without an alarm (vivid's colour bars do not look like a chest film)
        capture = next(r for r in results().values() if r["source"].startswith("capture:"))
        assert capture["verdict"] == "not_chest_radiograph" and capture["error_kind"] == "not_chest", capture
        assert capture["needs_attention"] is True and capture["probability"] is None, capture

        # every result was on screen when reported: banner colour by verdict, a picture below.
        # The screen is drawn before the frame is sent, and the next result may already be
        # drawn by the time of the screendump (a refused capture follows a radiograph within
        # the second the test waits): a shot shows its own result's banner or a later one's,
        # and at least one shows its own.
        own = 0
        for seq, shot in shots.items():
            w, h, _ = shot
            assert w >= 640 and h >= 480, (w, h)
            verdict = results()[seq]["verdict"]
            shown = pixel(shot, 2, 2)
            later = {BANNER[r["verdict"]] for s, r in results().items() if s >= seq}
            assert shown in later, (seq, verdict, shown)
            own += shown == BANNER[verdict]
            middle = [pixel(shot, x, h // 2) for x in range(w // 4, 3 * w // 4, 7)]
            assert len(set(middle)) >= 4, f"result {seq}: the picture is blank"
        assert own >= 1, "no screendump showed its own result"

        # TRIGGER: another frame now
        before = len(results())
        line.say("TRIGGER")
        wait("a triggered capture", lambda: len(results()) > before)

        # the line goes away and comes back: REPLAY from 1, and the held-back result again
        line.close()
        time.sleep(2)
        line.open()
        line.frames = []
        line.say("REPLAY 1")
        n = max(shots)
        wait("the replay", lambda: sorted({f["seq"] for f in line.frames if f["type"] == "result"}) == list(range(1, n + 1)))
        replayed = [f["seq"] for f in line.frames if f["type"] == "result"][:n]
        assert replayed == list(range(1, n + 1)), replayed
        held = held_back
        held_back = None  # let wait() ACK it now
        wait("the unacknowledged result resent", lambda: held in acked)
        line.say("STATUS")
        wait("status with nothing unacknowledged", lambda: any(f["type"] == "status" and f["unacked"] == 0 for f in line.frames))

        # the alert: the LED line went high for the positives, and low once the host ACKed the
        # last one (the held-back result is a positive: its ACK came last). The guest prints
        # the lines every few seconds: wait for a print that shows the alert off.
        def gpio():
            return [l for l in guest.log().splitlines() if l.startswith("guest gpio:")]

        led_on = [l for l in gpio() if re.search(r"ptxd-led\s*\)\s*out hi", l)]
        assert led_on, "\n".join(gpio()) or "no alert lines in the console"
        # (printed on change only: off, and no change for 3 s, longer than a pulse period)
        deadline = time.monotonic() + 30
        last, since = None, time.monotonic()
        while True:
            lines = gpio()
            if len(lines) != last:
                last, since = len(lines), time.monotonic()
            if re.search(r"ptxd-led\s*\)\s*out lo", lines[-1]) and time.monotonic() - since > 3:
                break
            assert time.monotonic() < deadline, f"the alert did not stop after the ACK: {lines[-1]}"
            time.sleep(0.25)
        # the ACK button (the virt machine's power-button line, pulsed by system_powerdown)
        # takes the last result off the screen: the idle screen comes back
        assert pixel(guest.screendump("before-ack"), 2, 2) != SLATE, "a result should be on screen"
        guest.monitor("system_powerdown")
        deadline = time.monotonic() + 30
        while pixel(guest.screendump("after-ack"), 2, 2) != SLATE:
            assert time.monotonic() < deadline, "the ACK button did not bring the idle screen back"
            time.sleep(0.5)
        assert "ACK button" in guest.log()
    except BaseException:
        print("---- guest console ----")
        print(guest.log())
        err = guest.qemu.stderr.read1().decode(errors="replace") if guest.qemu.poll() is not None else ""
        print(err)
        raise
    log = guest.log()
    # ptxd doctor, run in the guest before the service, found every device the config names
    assert "guest: doctor exit 0" in log, log
    assert log.count("sha256 ok (--quick: not loaded or run)") == 3, log  # lungs, classifier, segmenter (two roles, one file)
    assert "ok   capture /dev/video0" in log and "ok   display /dev/fb0" in log, log
    assert "board profile: QEMU virt" in log, log
