/** The settings form of the `mqar serve` page: `mqar train` flags (same names, same validation) plus a seed list. */

/** Form values by flag name ("d-model": "32", "seeds": "1,2"); absent flags take the trainer's defaults. */
export type PageSettings = Record<string, string>;

export interface PageField {
  flag: string;
  label: string;
  /** The form's initial value: a small MQAR that a software adapter trains in about a minute. */
  initial: string;
}

export const PAGE_FIELDS: readonly PageField[] = [
  { flag: "mixer", label: "mixer", initial: "based" },
  { flag: "d-model", label: "d_model", initial: "32" },
  { flag: "seq-len", label: "sequence length L", initial: "16" },
  { flag: "kv-pairs", label: "key-value pairs", initial: "2" },
  { flag: "vocab-size", label: "vocabulary", initial: "64" },
  { flag: "train-examples", label: "training examples", initial: "2048" },
  { flag: "test-examples", label: "test examples", initial: "256" },
  { flag: "batch-size", label: "batch size", initial: "64" },
  { flag: "epochs", label: "epochs", initial: "4" },
  { flag: "lr", label: "learning rate", initial: "0.01" },
  { flag: "seeds", label: "seeds (comma-separated)", initial: "1,2" },
];
