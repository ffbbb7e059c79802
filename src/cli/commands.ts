/** The command registry: one file per command under src/cli/, one line here. */
import type { Command } from "./_common.ts";
import { analyzeCommand } from "./analyze.ts";
import { benchCommand } from "./bench.ts";
import { dataCommand } from "./data.ts";
import { demoCommand } from "./demo.ts";
import { doctorCommand } from "./doctor.ts";
import { evalCommand } from "./eval.ts";
import { gateCommand } from "./gate.ts";
import { mergeCommand } from "./merge.ts";
import { reportCommand } from "./report.ts";
import { serveCommand } from "./serve.ts";
import { sweepCommand } from "./sweep.ts";
import { paramsCommand } from "./params.ts";
import { trainCommand } from "./train.ts";

export const COMMANDS: Command[] = [
  doctorCommand,
  paramsCommand,
  trainCommand,
  evalCommand,
  dataCommand,
  analyzeCommand,
  demoCommand,
  sweepCommand,
  mergeCommand,
  reportCommand,
  benchCommand,
  gateCommand,
  serveCommand,
];
