// A small parser for protobuf text format, the syntax of Triton's config.pbtxt. It knows no schema: it returns a
// tree of fields, each with its name, its values and the 1-based line and column it starts on, so that whoever
// gives the fields a meaning (src/models/config.ts) can say where a wrong one was written. No maintained parser on
// npm keeps positions, hence this one.
//
// Grammar (the parts Triton's configs use):
//   message  := (field [',' | ';'])*
//   field    := name ':' scalar | name [':'] ('{' message '}' | '<' message '>')
//             | name ':' '[' [scalar (',' scalar)*] ']' | name [':'] '[' [msg (',' msg)*] ']'
//   scalar   := integer | float | identifier | string+ (adjacent strings are concatenated)
// with '#' comments to the end of the line. Integers are decimal or hex (a leading zero, octal in protobuf, is
// refused rather than read as octal by surprise); enum values and booleans are identifiers; strings take single or
// double quotes and C escapes (\n \t \\ \" \' \xHH \NNN octal \uHHHH \UHHHHHHHH), and must be valid UTF-8.

export interface Position {
  /** 1-based. */
  readonly line: number;
  /** 1-based, in UTF-16 code units. */
  readonly column: number;
}

export interface PbtxtInteger extends Position {
  readonly kind: 'integer';
  /** As a number: beyond Number.MAX_SAFE_INTEGER it is rounded, so check `Number.isSafeInteger` where that matters. */
  readonly value: number;
  /** As written, sign included. */
  readonly text: string;
}

export interface PbtxtFloat extends Position {
  readonly kind: 'float';
  readonly value: number;
  readonly text: string;
}

/** An enum value, `true` / `false`, `inf`, `nan`: the reader of the tree decides what it means. */
export interface PbtxtIdentifier extends Position {
  readonly kind: 'identifier';
  readonly text: string;
}

export interface PbtxtString extends Position {
  readonly kind: 'string';
  /** Escapes decoded, adjacent strings concatenated. */
  readonly value: string;
  /** As written, quotes included. */
  readonly text: string;
}

export interface PbtxtMessage extends Position {
  readonly kind: 'message';
  /** In the order written; a repeated field appears once per time it was written. */
  readonly fields: PbtxtField[];
}

export type PbtxtScalar = PbtxtInteger | PbtxtFloat | PbtxtIdentifier | PbtxtString;
export type PbtxtValue = PbtxtScalar | PbtxtMessage;

export interface PbtxtField extends Position {
  readonly name: string;
  /** One value, or a list's values (possibly none). */
  readonly values: PbtxtValue[];
  /** Written as a list, `name: [ ... ]`. */
  readonly list: boolean;
}

/** Text that is not protobuf text format; the message names the file, line and column, and what was expected. */
export class PbtxtSyntaxError extends Error {
  override readonly name = 'PbtxtSyntaxError';
  readonly code = 'TICKSERVE_PBTXT_SYNTAX';
  constructor(
    readonly file: string,
    readonly line: number,
    readonly column: number,
    /** The field being read, as a dotted path from the top (`input.dims`); undefined outside any field. */
    readonly field: string | undefined,
    readonly expected: string,
    readonly found: string,
  ) {
    super(`${file}:${line}:${column}: ${field === undefined ? '' : `${field}: `}expected ${expected}, found ${found}`);
  }
}

/** Parses `text`, read from `file` (named in errors only). The root message starts at line 1, column 1. */
export function parsePbtxt(text: string, file: string): PbtxtMessage {
  return new Parser(text, file).parseRoot();
}

type TokenType = 'name' | 'integer' | 'float' | 'string' | 'punct' | 'eof';

interface Token extends Position {
  readonly type: TokenType;
  /** The source text (a punctuation mark itself; '' at the end of the file). */
  readonly text: string;
  /** Numbers: their value. */
  readonly number?: number;
  /** Strings: decoded. */
  readonly string?: string;
}

const NAME = /[A-Za-z_][A-Za-z0-9_]*/y;
const NUMBER = /-?(?:0[xX][0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?[fF]?)/y;
/** What may not follow a number directly: `12abc`, `1.2.3` are one bad token, not a number and a name. */
const WORD = /[A-Za-z0-9_.+-]*/y;
const PUNCTUATION = '{}<>[]:,;-';
const SIMPLE_ESCAPES: Readonly<Record<string, number>> = {
  a: 0x07, b: 0x08, f: 0x0c, n: 0x0a, r: 0x0d, t: 0x09, v: 0x0b, '\\': 0x5c, "'": 0x27, '"': 0x22, '?': 0x3f,
};
const UTF8 = new TextDecoder('utf-8', { fatal: true });
const CLOSER = { '{': '}', '<': '>' } as const;
/** Deeper nesting is refused as a syntax error rather than left to overflow the stack (Triton's configs nest 4). */
export const MAX_PBTXT_DEPTH = 64;

class Parser {
  private pos = 0;
  private line = 1;
  private lineStart = 0;
  private lookahead: Token | null = null;
  /** The fields being read, outermost first: the `field` of an error. */
  private readonly path: string[] = [];

  constructor(
    private readonly text: string,
    private readonly file: string,
  ) {}

  parseRoot(): PbtxtMessage {
    return { kind: 'message', line: 1, column: 1, fields: this.parseFields(null) };
  }

  /** Fields up to `closer` (consumed), or to the end of the file when there is none (the root). */
  private parseFields(closer: { mark: '}' | '>'; opened: Token } | null): PbtxtField[] {
    const fields: PbtxtField[] = [];
    for (;;) {
      const token = this.peek();
      if (closer !== null && token.type === 'punct' && token.text === closer.mark) {
        this.next();
        return fields;
      }
      if (token.type === 'eof') {
        if (closer === null) return fields;
        this.fail(token, `'${closer.mark}' to close the '${closer.opened.text}' opened on line ${closer.opened.line}`);
      }
      if (token.type !== 'name') this.fail(token, closer === null ? 'a field name' : `a field name or '${closer.mark}'`);
      this.next();
      this.path.push(token.text);
      fields.push(this.parseField(token));
      this.path.pop();
      const separator = this.peek();
      if (separator.type === 'punct' && (separator.text === ',' || separator.text === ';')) this.next();
    }
  }

  private parseField(name: Token): PbtxtField {
    const at = { name: name.text, line: name.line, column: name.column };
    const colon = this.accept(':');
    const token = this.peek();
    if (this.isOpener(token)) return { ...at, values: [this.parseMessage()], list: false };
    if (token.type === 'punct' && token.text === '[') {
      this.next();
      return { ...at, values: this.parseList(colon), list: true };
    }
    if (!colon) this.fail(token, `':' or '{' after the field name`);
    return { ...at, values: [this.parseScalar()], list: false };
  }

  /** After '[': scalars or messages (not both), comma-separated, up to ']'. Scalars need the field's ':'. */
  private parseList(colon: boolean): PbtxtValue[] {
    const values: PbtxtValue[] = [];
    if (this.accept(']')) return values;
    for (;;) {
      const token = this.peek();
      const messages = values.length === 0 ? this.isOpener(token) : values[0].kind === 'message';
      if (messages) {
        if (!this.isOpener(token)) this.fail(token, `'{' (this list holds messages)`);
        values.push(this.parseMessage());
      } else {
        if (!colon) this.fail(token, `'{' (a list of values needs ':' after the field name)`);
        if (this.isOpener(token)) this.fail(token, 'a value (this list holds values, not messages)');
        values.push(this.parseScalar());
      }
      if (this.accept(']')) return values;
      if (!this.accept(',')) this.fail(this.peek(), `',' or ']'`);
    }
  }

  private parseMessage(): PbtxtMessage {
    if (this.path.length > MAX_PBTXT_DEPTH) this.fail(this.peek(), `at most ${MAX_PBTXT_DEPTH} nested messages`);
    const opened = this.next();
    const mark = CLOSER[opened.text as '{' | '<'];
    return { kind: 'message', line: opened.line, column: opened.column, fields: this.parseFields({ mark, opened }) };
  }

  private parseScalar(): PbtxtScalar {
    const token = this.peek();
    const at = { line: token.line, column: token.column };
    switch (token.type) {
      case 'integer':
        this.next();
        return { kind: 'integer', ...at, value: token.number!, text: token.text };
      case 'float':
        this.next();
        return { kind: 'float', ...at, value: token.number!, text: token.text };
      case 'name':
        this.next();
        return { kind: 'identifier', ...at, text: token.text };
      case 'string': {
        this.next();
        let value = token.string!;
        let text = token.text;
        for (let more = this.peek(); more.type === 'string'; more = this.peek()) {
          this.next();
          value += more.string!;
          text += ` ${more.text}`;
        }
        return { kind: 'string', ...at, value, text };
      }
      case 'punct':
        if (token.text === '-') {
          // The lexer reads a sign written against a number with the number; a sign alone is one before a space
          // (`- 5`, which protobuf accepts) or before `inf` / `nan`.
          this.next();
          const after = this.peek();
          const unsigned = (after.type === 'integer' || after.type === 'float') && !after.text.startsWith('-');
          if (unsigned) {
            this.next();
            return { kind: after.type, ...at, value: -after.number!, text: `-${after.text}` };
          }
          if (after.type === 'name' && /^(inf|infinity|nan)$/i.test(after.text)) {
            this.next();
            return { kind: 'float', ...at, value: /^nan$/i.test(after.text) ? NaN : -Infinity, text: `-${after.text}` };
          }
          this.fail(after, `a number after '-'`);
        }
    }
    return this.fail(token, 'a value (a number, a quoted string or an identifier)');
  }

  private isOpener(token: Token): boolean {
    return token.type === 'punct' && (token.text === '{' || token.text === '<');
  }

  private accept(mark: string): boolean {
    const token = this.peek();
    if (token.type !== 'punct' || token.text !== mark) return false;
    this.next();
    return true;
  }

  private peek(): Token {
    this.lookahead ??= this.lex();
    return this.lookahead;
  }

  private next(): Token {
    const token = this.peek();
    this.lookahead = null;
    return token;
  }

  private fail(token: Token, expected: string): never {
    const found = token.type === 'eof' ? 'end of file' : token.type === 'string' ? token.text : `'${token.text}'`;
    this.failAt(token, expected, found);
  }

  private failAt(at: Position, expected: string, found: string): never {
    const field = this.path.length === 0 ? undefined : this.path.join('.');
    throw new PbtxtSyntaxError(this.file, at.line, at.column, field, expected, found);
  }

  private lex(): Token {
    this.skipSpaceAndComments();
    const { text, pos } = this;
    const at = { line: this.line, column: pos - this.lineStart + 1 };
    if (pos >= text.length) return { type: 'eof', text: '', ...at };
    const char = text[pos];
    if (char === '"' || char === "'") return this.lexString(at);
    NAME.lastIndex = pos;
    const name = NAME.exec(text);
    if (name !== null) {
      this.pos += name[0].length;
      return { type: 'name', text: name[0], ...at };
    }
    NUMBER.lastIndex = pos;
    const number = NUMBER.exec(text);
    if (number !== null) return this.lexNumber(number[0], at);
    this.pos += 1;
    // Anything else is a token of its own, so that the parser can say what it expected in its place.
    return { type: 'punct', text: PUNCTUATION.includes(char) ? char : String.fromCodePoint(text.codePointAt(pos)!), ...at };
  }

  private lexNumber(source: string, at: Position): Token {
    WORD.lastIndex = this.pos + source.length;
    const trailing = WORD.exec(this.text)![0];
    if (trailing !== '') this.failAt(at, 'a number', `'${source}${trailing}'`);
    this.pos += source.length;
    const unsigned = source.replace(/^-/, '');
    const sign = source.startsWith('-') ? -1 : 1;
    if (/^0[xX]/.test(unsigned)) {
      return { type: 'integer', text: source, number: sign * parseInt(unsigned.slice(2), 16), ...at };
    }
    if (/[.eEfF]/.test(unsigned)) {
      return { type: 'float', text: source, number: Number(source.replace(/[fF]$/, '')), ...at };
    }
    if (/^0\d/.test(unsigned)) {
      this.failAt(at, 'a decimal integer without leading zeros (octal is not supported)', `'${source}'`);
    }
    return { type: 'integer', text: source, number: Number(source), ...at };
  }

  /** A quoted string: raw characters kept as their UTF-8 bytes, escapes as the bytes they name, then decoded. */
  private lexString(at: Position): Token {
    const { text } = this;
    const quote = text[this.pos];
    const start = this.pos;
    const bytes: number[] = [];
    let i = start + 1;
    let run = i;
    const flush = (end: number) => {
      if (end > run) for (const byte of Buffer.from(text.slice(run, end), 'utf8')) bytes.push(byte);
    };
    for (;;) {
      if (i >= text.length || text[i] === '\n' || text[i] === '\r') {
        this.failAt(at, `a closing ${quote} before the end of the line`, i >= text.length ? 'end of file' : 'end of line');
      }
      const char = text[i];
      if (char === quote) break;
      if (char !== '\\') {
        i += 1;
        continue;
      }
      flush(i);
      const escapeAt = { line: this.line, column: i - this.lineStart + 1 };
      i = this.lexEscape(i + 1, bytes, escapeAt);
      run = i;
    }
    flush(i);
    this.pos = i + 1;
    let decoded: string;
    try {
      decoded = UTF8.decode(Uint8Array.from(bytes));
    } catch {
      this.failAt(at, 'a string of valid UTF-8', text.slice(start, this.pos));
    }
    return { type: 'string', text: text.slice(start, this.pos), string: decoded, ...at };
  }

  /** The escape after a backslash at `i - 1`: its bytes appended, the index after it returned. */
  private lexEscape(i: number, bytes: number[], at: Position): number {
    const { text } = this;
    const char = text[i] ?? '';
    if (Object.hasOwn(SIMPLE_ESCAPES, char)) {
      bytes.push(SIMPLE_ESCAPES[char]);
      return i + 1;
    }
    const octal = /^[0-7]{1,3}/.exec(text.slice(i, i + 3));
    if (octal !== null && parseInt(octal[0], 8) <= 0xff) {
      bytes.push(parseInt(octal[0], 8));
      return i + octal[0].length;
    }
    const hex = char === 'x' || char === 'X' ? /^[0-9a-fA-F]{1,2}/.exec(text.slice(i + 1, i + 3)) : null;
    if (hex !== null) {
      bytes.push(parseInt(hex[0], 16));
      return i + 1 + hex[0].length;
    }
    const digits = char === 'u' ? 4 : char === 'U' ? 8 : 0;
    const code = digits === 0 ? null : text.slice(i + 1, i + 1 + digits);
    if (code !== null && new RegExp(`^[0-9a-fA-F]{${digits}}$`).test(code)) {
      const point = parseInt(code, 16);
      if (point <= 0x10ffff && (point < 0xd800 || point > 0xdfff)) {
        for (const byte of Buffer.from(String.fromCodePoint(point), 'utf8')) bytes.push(byte);
        return i + 1 + digits;
      }
    }
    const shown = text.slice(i - 1, i + 1 + digits).split(/[\r\n]/)[0];
    this.failAt(at, 'an escape (\\n \\t \\\\ \\" \\\' \\xHH \\NNN \\uHHHH \\UHHHHHHHH)', `'${shown}'`);
  }

  private skipSpaceAndComments(): void {
    const { text } = this;
    while (this.pos < text.length) {
      const char = text[this.pos];
      if (char === '\n') {
        this.pos += 1;
        this.line += 1;
        this.lineStart = this.pos;
      } else if (char === ' ' || char === '\t' || char === '\r' || char === '\f' || char === '\v') {
        this.pos += 1;
      } else if (char === '#') {
        const end = text.indexOf('\n', this.pos);
        this.pos = end === -1 ? text.length : end;
      } else {
        return;
      }
    }
  }
}
