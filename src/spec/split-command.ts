/**
 * Split a command string into argv the way a POSIX shell would for plain words:
 * whitespace separates, '...' is literal, "..." allows \" \\ \$ \` escapes,
 * a backslash outside quotes escapes the next character. No expansion of any kind.
 * Returns an error message instead of argv for an unterminated quote.
 */
export function splitCommand(command: string): { argv: string[] } | { error: string } {
  const argv: string[] = [];
  let cur = '';
  let inWord = false;
  let i = 0;
  while (i < command.length) {
    const ch = command[i];
    if (ch === "'") {
      const end = command.indexOf("'", i + 1);
      if (end < 0) return { error: 'unterminated single quote' };
      cur += command.slice(i + 1, end);
      inWord = true;
      i = end + 1;
    } else if (ch === '"') {
      i++;
      let closed = false;
      while (i < command.length) {
        const c = command[i];
        if (c === '"') {
          closed = true;
          i++;
          break;
        }
        if (c === '\\' && i + 1 < command.length && '"\\$`'.includes(command[i + 1])) {
          cur += command[i + 1];
          i += 2;
        } else {
          cur += c;
          i++;
        }
      }
      if (!closed) return { error: 'unterminated double quote' };
      inWord = true;
    } else if (ch === '\\') {
      if (i + 1 < command.length) cur += command[i + 1];
      inWord = true;
      i += 2;
    } else if (/\s/.test(ch)) {
      if (inWord) argv.push(cur);
      cur = '';
      inWord = false;
      i++;
    } else {
      cur += ch;
      inWord = true;
      i++;
    }
  }
  if (inWord) argv.push(cur);
  return { argv };
}
