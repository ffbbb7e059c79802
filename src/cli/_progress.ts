/** Progress output: a one-line bar redrawn in place on a TTY, plain periodic lines otherwise (logs, CI). */
import type { TrainProgress } from "../train/trainer.ts";

const encoder = new TextEncoder();

export class ProgressPrinter {
  readonly tty = Deno.stderr.isTerminal();
  #lastPlain = 0;
  #drawn = false;

  constructor(readonly prefix: string, readonly plainEveryS = 10) {}

  update(p: TrainProgress): void {
    const frac = p.totalSteps > 0 ? p.step / p.totalSteps : 0;
    const stats = `epoch ${p.epoch + 1}/${p.epochs} step ${p.step}/${p.totalSteps} ` +
      `loss ${p.loss === null ? "-" : p.loss.toFixed(4)} ` +
      `acc ${p.lastAccuracy === null ? "-" : p.lastAccuracy.toFixed(4)} ${Math.round(p.tokensPerS)} tok/s`;
    if (this.tty) {
      const width = 24;
      const filled = Math.round(frac * width);
      const bar = `[${"#".repeat(filled)}${".".repeat(width - filled)}]`;
      Deno.stderr.writeSync(encoder.encode(`\r\x1b[2K${this.prefix} ${bar} ${stats}`));
      this.#drawn = true;
    } else if (performance.now() - this.#lastPlain >= this.plainEveryS * 1000) {
      this.#lastPlain = performance.now();
      console.error(`${this.prefix} ${stats}`);
    }
  }

  /** Prints a line of its own (epoch summaries), keeping the bar below it. */
  line(text: string): void {
    if (this.tty && this.#drawn) Deno.stderr.writeSync(encoder.encode("\r\x1b[2K"));
    console.error(text);
  }

  done(): void {
    if (this.tty && this.#drawn) Deno.stderr.writeSync(encoder.encode("\r\x1b[2K"));
    this.#drawn = false;
  }
}
