/**
 * Shards: `--shard i/n` takes every n-th run of the expanded grid starting at i (round-robin over the grid order).
 * Because the grid keeps the seeds of a cell adjacent and loops sequence lengths outermost, round-robin gives every
 * shard nearly the same mix of cheap and expensive runs. The shards of one n partition the grid exactly.
 * Resume does not depend on the shard assignment (runs are skipped by runId over every results file of a directory),
 * so re-sharding with another n after a partial sweep loses nothing.
 */
import { UsageError } from "../cli/_common.ts";

export interface Shard {
  /** 0-based shard index, < count. */
  index: number;
  count: number;
}

/** Parses "i/n" (0 <= i < n); mistakes are UsageErrors naming the flag. */
export function parseShard(text: string, flag = "shard"): Shard {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  if (!m) throw new UsageError(`--${flag}: got "${text}", expected i/n with 0 <= i < n (e.g. 0/4)`);
  const index = Number(m[1]);
  const count = Number(m[2]);
  if (count < 1) throw new UsageError(`--${flag}: got "${text}", the shard count n must be >= 1`);
  if (index >= count) {
    throw new UsageError(
      `--${flag}: got "${text}", the shard index is 0-based and must be < ${count} (0..${count - 1})`,
    );
  }
  return { index, count };
}

export function shardLabel(shard: Shard): string {
  return `${shard.index}/${shard.count}`;
}

/** The runs of one shard, in grid order. */
export function selectShard<T>(runs: readonly T[], shard: Shard): T[] {
  if (
    !Number.isInteger(shard.count) || shard.count < 1 || !Number.isInteger(shard.index) || shard.index < 0 ||
    shard.index >= shard.count
  ) {
    throw new RangeError(`invalid shard ${shard.index}/${shard.count}`);
  }
  return runs.filter((_, i) => i % shard.count === shard.index);
}
