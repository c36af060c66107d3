// MLlib's LabeledPoint: a label and a feature vector, with Spark's text form "(1.0,[2.0,3.0])".

import { formatDouble, parseNumeric, vectorFromNumeric, DenseVector, Vector, VectorParseError } from "./linalg.js";

export class LabeledPoint {
  constructor(
    readonly label: number,
    readonly features: Vector,
  ) {}

  /**
   * Spark's LabeledPoint.parse: "(label,[f1,f2,...])", "(label,(size,[indices],[values]))", or the
   * pre-1.0 dense form "label,f1 f2 f3".
   */
  static parse(s: string): LabeledPoint {
    const text = s.trim();
    if (text.startsWith("(")) {
      const p = parseNumeric(text);
      if (typeof p === "object" && !Array.isArray(p) && p.tuple.length === 2 && typeof p.tuple[0] === "number") {
        return new LabeledPoint(p.tuple[0], vectorFromNumeric(p.tuple[1] as Parameters<typeof vectorFromNumeric>[0], text));
      }
      throw new VectorParseError(`Cannot parse ${JSON.stringify(s)} as a LabeledPoint: use "(1.0,[2.0,3.0])"`);
    }
    const comma = text.indexOf(",");
    const label = Number(text.slice(0, comma));
    const features = comma < 0 ? [] : text.slice(comma + 1).trim().split(/ +/).map(Number);
    if (comma < 0 || text.slice(0, comma).trim() === "" || Number.isNaN(label) || features.some((x) => Number.isNaN(x))) {
      throw new VectorParseError(`Cannot parse ${JSON.stringify(s)} as a LabeledPoint: use "(1.0,[2.0,3.0])" or "1.0,2.0 3.0"`);
    }
    return new LabeledPoint(label, new DenseVector(features));
  }

  toString(): string {
    return `(${formatDouble(this.label)},${this.features.toString()})`;
  }

  toJSON(): { label: number; features: ReturnType<Vector["toJSON"]> } {
    return { label: this.label, features: this.features.toJSON() };
  }
}
