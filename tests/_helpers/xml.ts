/** A tiny XML well-formedness checker for SVG/HTML outputs (no DOMParser in Deno). */

export function checkXml(doc: string): { root: string; elements: string[]; texts: string[] } {
  let s = doc.replace(/^\uFEFF?<\?xml[^?]*\?>/, "");
  s = s.replace(/^\s+/, "");
  const token =
    /<!--[\s\S]*?-->|<\/([A-Za-z][\w:.-]*)\s*>|<([A-Za-z][\w:.-]*)((?:\s+[A-Za-z_:][\w:.-]*\s*=\s*(?:"[^"<]*"|'[^'<]*'))*)\s*(\/?)>|([^<]+)/y;
  const entity = /&(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);/g;
  const checkEntities = (text: string, where: string) => {
    if (text.replace(entity, "").includes("&")) throw new Error(`unescaped "&" in ${where}: ${text.slice(0, 80)}`);
  };
  const stack: string[] = [];
  const elements: string[] = [];
  const texts: string[] = [];
  let root = "";
  let closedRoot = false;
  let pos = 0;
  while (pos < s.length) {
    token.lastIndex = pos;
    const m = token.exec(s);
    if (!m) throw new Error(`not well-formed at offset ${pos}: ${JSON.stringify(s.slice(pos, pos + 60))}`);
    pos = token.lastIndex;
    const [all, close, open, attrs, selfClose, text] = m;
    if (all.startsWith("<!--")) continue;
    if (text !== undefined) {
      if ((stack.length === 0) && text.trim() !== "") throw new Error(`text outside the root: ${text.slice(0, 40)}`);
      checkEntities(text, "text");
      if (text.includes(">")) throw new Error(`raw ">" in text (allowed in XML, but our writer escapes it): ${text}`);
      texts.push(
        text.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(
          /&amp;/g,
          "&",
        ),
      );
      continue;
    }
    if (close !== undefined) {
      const top = stack.pop();
      if (top !== close) throw new Error(`</${close}> closes <${top ?? "nothing"}>`);
      if (stack.length === 0) closedRoot = true;
      continue;
    }
    if (closedRoot || (stack.length === 0 && root)) throw new Error(`second root element <${open}>`);
    if (!root) root = open;
    const names = [...(attrs ?? "").matchAll(/([A-Za-z_:][\w:.-]*)\s*=\s*("([^"]*)"|'([^']*)')/g)];
    const seen = new Set<string>();
    for (const a of names) {
      if (seen.has(a[1])) throw new Error(`duplicate attribute ${a[1]} on <${open}>`);
      seen.add(a[1]);
      checkEntities(a[3] ?? a[4] ?? "", `attribute ${a[1]}`);
    }
    elements.push(open);
    if (!selfClose) stack.push(open);
    else if (stack.length === 0) closedRoot = true;
  }
  if (stack.length) throw new Error(`unclosed <${stack.join("> <")}>`);
  if (!root) throw new Error("no root element");
  return { root, elements, texts };
}
