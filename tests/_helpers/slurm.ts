/**
 * A real one-node Slurm cluster on localhost for tests (Debian's slurmctld, slurmd, slurm-client and munge; `.ci/run`
 * installs them). There is no systemd here, so the daemons are started in the foreground and stopped by pid. Without
 * the packages or root, `slurmUnavailable()` says why and the test is skipped.
 */
import { join } from "node:path";

export interface SlurmCluster {
  /** Environment for sbatch/squeue/scontrol (SLURM_CONF). */
  env: Record<string, string>;
  dir: string;
  /** Seconds from nothing running to a node that accepts jobs. */
  startS: number;
  stop(): Promise<void>;
}

const BINARIES = ["munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "scancel"];

function which(name: string): string | null {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":").concat(["/usr/sbin", "/sbin"])) {
    try {
      if (Deno.statSync(join(dir, name)).isFile) return join(dir, name);
    } catch {
      // not in this directory
    }
  }
  return null;
}

/** Why a local Slurm cannot be started here, or null when it can. */
export function slurmUnavailable(): string | null {
  if (Deno.build.os !== "linux") return "Slurm test: Linux only";
  const missing = BINARIES.filter((b) => !which(b));
  if (missing.length) {
    return `Slurm test skipped: ${missing.join(", ")} not installed ` +
      "(apt-get install slurmctld slurmd slurm-client munge; .ci/run does this where apt is available)";
  }
  if (Deno.uid?.() !== 0) return "Slurm test skipped: needs root (the test runs slurmd and munged itself)";
  try {
    Deno.statSync("/etc/munge/munge.key");
  } catch {
    return "Slurm test skipped: /etc/munge/munge.key is missing (reinstall munge)";
  }
  return null;
}

export async function run(
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command(which(cmd) ?? cmd, { args, env, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

async function waitFor(what: string, timeoutS: number, ok: () => Promise<boolean>): Promise<void> {
  const end = performance.now() + timeoutS * 1000;
  while (performance.now() < end) {
    if (await ok()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`local Slurm: ${what} not ready after ${timeoutS} s`);
}

export async function startSlurm(): Promise<SlurmCluster> {
  const t0 = performance.now();
  const dir = await Deno.makeTempDir({ prefix: "mqar-slurm-" });
  for (const sub of ["state", "spool"]) await Deno.mkdir(join(dir, sub));
  const cpus = navigator.hardwareConcurrency || 1;
  const conf = join(dir, "slurm.conf");
  // Ports away from the defaults, so a test never talks to a real cluster's daemons on this machine.
  await Deno.writeTextFile(
    conf,
    [
      "ClusterName=mqartest",
      "SlurmctldHost=localhost",
      "SlurmUser=root",
      "SlurmctldPort=16817",
      "SlurmdPort=16818",
      "AuthType=auth/munge",
      `StateSaveLocation=${dir}/state`,
      `SlurmdSpoolDir=${dir}/spool`,
      `SlurmctldPidFile=${dir}/slurmctld.pid`,
      `SlurmdPidFile=${dir}/slurmd.pid`,
      `SlurmctldLogFile=${dir}/slurmctld.log`,
      `SlurmdLogFile=${dir}/slurmd.log`,
      "ProctrackType=proctrack/linuxproc",
      "TaskPlugin=task/none",
      "ReturnToService=2",
      "SchedulerType=sched/builtin",
      "SelectType=select/cons_tres",
      "SelectTypeParameters=CR_CPU",
      "AccountingStorageType=accounting_storage/none",
      "JobAcctGatherType=jobacct_gather/none",
      "MpiDefault=none",
      "SlurmctldTimeout=30",
      "MinJobAge=600",
      `NodeName=localhost CPUs=${cpus} State=UNKNOWN`,
      "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
      "",
    ].join("\n"),
  );
  const env = { SLURM_CONF: conf };
  const children: Deno.ChildProcess[] = [];
  const spawn = (cmd: string, args: string[]) => {
    const child = new Deno.Command(which(cmd)!, { args, env, stdout: "null", stderr: "null" }).spawn();
    children.push(child);
    return child;
  };
  // munged runs as the munge user and needs its socket directory.
  await Deno.mkdir("/run/munge", { recursive: true });
  await run("chown", ["munge:munge", "/run/munge"]);
  let mungeRunning = (await run("pgrep", ["-x", "munged"])).code === 0;
  let munged: Deno.ChildProcess | null = null;
  if (!mungeRunning) {
    munged = new Deno.Command(which("runuser") ?? "runuser", {
      args: ["-u", "munge", "--", which("munged")!, "-F"],
      stdout: "null",
      stderr: "null",
    }).spawn();
    await waitFor("munged", 20, async () => (await run("pgrep", ["-x", "munged"])).code === 0);
    mungeRunning = true;
  }
  spawn("slurmctld", ["-D", "-i", "-f", conf]);
  await waitFor("slurmctld", 30, async () => (await run("scontrol", ["ping"], env)).out.includes("UP"));
  spawn("slurmd", ["-D", "-N", "localhost", "-f", conf]);
  await waitFor("the node", 60, async () => {
    const r = await run("sinfo", ["-h", "-N", "-o", "%T"], env);
    return r.code === 0 && /^(idle|mixed|allocated)/m.test(r.out.trim());
  });
  const startS = (performance.now() - t0) / 1000;
  return {
    env,
    dir,
    startS,
    async stop() {
      await run("scancel", ["--full", "-u", "root"], env);
      for (const c of children.reverse()) {
        try {
          c.kill("SIGTERM");
        } catch {
          // already gone
        }
        await c.status;
      }
      if (munged) {
        try {
          munged.kill("SIGTERM");
        } catch {
          // already gone
        }
        await munged.status;
      }
    },
  };
}

/** Lines of `squeue` for these jobs: "<jobid> <state>", one per task (array tasks as <array>_<i>). */
export async function queue(env: Record<string, string>): Promise<{ id: string; state: string; name: string }[]> {
  const r = await run("squeue", ["-h", "-r", "-o", "%i %T %j"], env);
  return r.out.trim().split("\n").filter(Boolean).map((l) => {
    const [id, state, name] = l.trim().split(/\s+/);
    return { id, state, name };
  });
}
