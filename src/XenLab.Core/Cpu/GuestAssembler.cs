// An in-process NASM-style assembler (Intel syntax) for the vCPU's subset, built on Iced's
// Assembler: lines of `label:`, `db/dw/dd/dq`, and instructions with register, immediate,
// label and [base + index*scale + disp] operands (size keywords byte/word/dword/qword,
// optional `ptr`), prefixes rep/repe/repne/lock, comments after ';'. Each instruction is
// matched to an overload of Iced's Assembler by operand types. Errors carry line and column.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Reflection;
using Iced.Intel;

namespace XenLab.Cpu;

/// <summary>A syntax or operand error in guest assembly; <see cref="Line"/> and <see cref="Column"/> are 1-based.</summary>
public sealed class GuestAssemblyException : XenLabException
{
    public GuestAssemblyException(int line, int column, string reason)
        : base($"line {line}, column {column}: {reason}")
    {
        Line = line;
        Column = column;
        Reason = reason;
    }
    public int Line { get; }
    public int Column { get; }
    public string Reason { get; }
    public override string ErrorId => "GuestAssembly";
}

public static class GuestAssembler
{
    /// <summary>Assembles <paramref name="text"/> for execution at <paramref name="origin"/>.</summary>
    public static byte[] Assemble(string text, ulong origin) => new Session(text).Run(origin);

    private enum Kind { Register, Memory, Immediate, LabelRef }

    private sealed class Operand
    {
        public Kind Kind;
        public int Column;
        public Register Register;
        /// <summary>Memory operand size in bytes, 0 when not given.</summary>
        public int Size;
        public Register Base = Register.None, Index = Register.None;
        public int Scale = 1;
        public long Displacement;
        public string? LabelName;
        public ulong Value;
        public bool Negative;
    }

    private static readonly Dictionary<string, List<MethodInfo>> Methods = typeof(Assembler)
        .GetMethods(BindingFlags.Public | BindingFlags.Instance)
        .Where(m => m.DeclaringType == typeof(Assembler) && m.ReturnType == typeof(void))
        .GroupBy(m => m.Name, StringComparer.Ordinal)
        .ToDictionary(g => g.Key, g => g.OrderBy(ImmediateRank).ToList(), StringComparer.Ordinal);

    // Signed immediate overloads first, narrow before wide, so "-1" and "1" pick short forms.
    private static int ImmediateRank(MethodInfo m)
    {
        foreach (var p in m.GetParameters())
        {
            var t = p.ParameterType;
            if (t == typeof(sbyte)) return 0;
            if (t == typeof(short)) return 1;
            if (t == typeof(int)) return 2;
            if (t == typeof(long)) return 3;
            if (t == typeof(byte)) return 4;
            if (t == typeof(ushort)) return 5;
            if (t == typeof(uint)) return 6;
            if (t == typeof(ulong)) return 7;
        }
        return 0;
    }

    private static readonly HashSet<string> Branches = new(StringComparer.Ordinal)
    {
        "jmp", "call", "loop", "loope", "loopz", "loopne", "loopnz", "jrcxz",
        "jo", "jno", "jb", "jc", "jnae", "jae", "jnb", "jnc", "je", "jz", "jne", "jnz", "jbe", "jna", "ja", "jnbe",
        "js", "jns", "jp", "jpe", "jnp", "jpo", "jl", "jnge", "jge", "jnl", "jle", "jng", "jg", "jnle",
    };

    private sealed class Session
    {
        private readonly string[] _lines;
        private readonly Assembler _asm = new(64);
        private readonly Dictionary<string, Label> _labels = new(StringComparer.Ordinal);
        private readonly Dictionary<string, int> _labelLine = new(StringComparer.Ordinal);
        private Label? _pending;
        private int _line;

        public Session(string text) => _lines = text.Replace("\r\n", "\n").Split('\n');

        public byte[] Run(ulong origin)
        {
            // Pass 1: every label, so a forward reference is known to be a label. Labels with no
            // statement between them name the same spot and share one Iced label.
            Label? open = null;
            for (int i = 0; i < _lines.Length; i++)
            {
                _line = i + 1;
                var (label, col, rest) = SplitLabel(StripComment(_lines[i]));
                if (label is not null)
                {
                    if (!IsIdentifier(label)) throw Error(col, $"'{label}' is not a valid label name");
                    if (ParseRegister(label, out _)) throw Error(col, $"'{label}' is a register name and cannot be a label");
                    if (_labels.ContainsKey(label)) throw Error(col, $"label '{label}' is already defined on line {_labelLine[label]}");
                    open ??= _asm.CreateLabel(label);
                    _labels[label] = open.Value;
                    _labelLine[label] = _line;
                }
                if (rest.Trim().Length > 0) open = null;
            }
            // Pass 2: emit.
            for (int i = 0; i < _lines.Length; i++)
            {
                _line = i + 1;
                var (label, _, rest) = SplitLabel(StripComment(_lines[i]));
                if (label is not null) DefineLabel(label);
                if (rest.Trim().Length > 0) Statement(rest);
            }
            if (_pending is not null)
                throw new GuestAssemblyException(_line, 1, "a label at the end must be followed by an instruction or data");
            var stream = new MemoryStream();
            if (!_asm.TryAssemble(new StreamCodeWriter(stream), origin, out string? error, out _))
                throw new GuestAssemblyException(1, 1, "Iced could not encode the program: " + error);
            return stream.ToArray();
        }

        private void DefineLabel(string name)
        {
            if (_pending is not null) return;          // an alias of the label just defined (pass 1 shared it)
            var l = _labels[name];
            _asm.Label(ref l);
            foreach (var key in _labels.Where(kv => kv.Value.Equals(_labels[name])).Select(kv => kv.Key).ToList()) _labels[key] = l;
            _pending = l;
        }

        private GuestAssemblyException Error(int column, string reason) => new(_line, column, reason);

        private static string StripComment(string s)
        {
            bool inString = false;
            char quote = '\0';
            for (int i = 0; i < s.Length; i++)
            {
                char c = s[i];
                if (inString) { if (c == quote) inString = false; continue; }
                if (c is '"' or '\'') { inString = true; quote = c; continue; }
                if (c == ';') return s.Substring(0, i);
            }
            return s;
        }

        /// <summary>"name: rest" -> (name, column of name, rest padded so columns still count from the line start).</summary>
        private static (string? Label, int Column, string Text) SplitLabel(string s)
        {
            int i = 0;
            while (i < s.Length && char.IsWhiteSpace(s[i])) i++;
            int start = i;
            while (i < s.Length && (char.IsLetterOrDigit(s[i]) || s[i] is '_' or '.' or '$' or '@')) i++;
            if (i > start && i < s.Length && s[i] == ':')
                return (s.Substring(start, i - start), start + 1, new string(' ', i + 1) + s.Substring(i + 1));
            return (null, 0, s);
        }

        private static bool IsIdentifier(string s) =>
            s.Length > 0 && (char.IsLetter(s[0]) || s[0] is '_' or '.' or '@') && s.All(c => char.IsLetterOrDigit(c) || c is '_' or '.' or '$' or '@');

        private void Statement(string s)
        {
            var tokens = new Tokenizer(s, this);
            var (word, col) = tokens.Word();
            string mnemonic = word.ToLowerInvariant();
            var prefixes = new List<string>();
            while (mnemonic is "rep" or "repe" or "repz" or "repne" or "repnz" or "lock")
            {
                prefixes.Add(mnemonic);
                (word, col) = tokens.Word();
                if (word.Length == 0) throw Error(col, $"prefix '{prefixes[^1]}' needs an instruction after it");
                mnemonic = word.ToLowerInvariant();
            }
            if (mnemonic is "db" or "dw" or "dd" or "dq")
            {
                if (prefixes.Count > 0) throw Error(col, $"'{mnemonic}' cannot take a prefix");
                Data(mnemonic, tokens);
                _pending = null;
                return;
            }
            if (!IsIdentifier(word)) throw Error(col, $"expected an instruction, found '{word}'");
            var operands = new List<Operand>();
            if (!tokens.AtEnd)
            {
                do operands.Add(ParseOperand(tokens, Branches.Contains(mnemonic)));
                while (tokens.TryComma());
                if (!tokens.AtEnd) throw Error(tokens.Column, $"unexpected '{tokens.Rest}' after the operands");
            }
            Emit(mnemonic, col, prefixes, operands);
            _pending = null;
        }

        private void Data(string directive, Tokenizer tokens)
        {
            int width = directive switch { "db" => 1, "dw" => 2, "dd" => 4, _ => 8 };
            var bytes = new List<byte>();
            do
            {
                tokens.SkipSpace();
                int col = tokens.Column;
                if (tokens.Peek is '"' or '\'' && width == 1 && tokens.TryString(out string str))
                {
                    foreach (char c in str) bytes.Add((byte)c);
                    continue;
                }
                var (v, neg) = tokens.Number(col);
                ulong limit = width == 8 ? ulong.MaxValue : (1UL << (width * 8)) - 1;
                if (neg ? v > (limit >> 1) + 1 : v > limit) throw Error(col, $"value does not fit in {width} byte(s)");
                ulong value = neg ? unchecked(0 - v) : v;
                for (int i = 0; i < width; i++) bytes.Add((byte)(value >> (8 * i)));
            }
            while (tokens.TryComma());
            if (!tokens.AtEnd) throw Error(tokens.Column, $"unexpected '{tokens.Rest}'");
            _asm.db(bytes.ToArray());
        }

        private Operand ParseOperand(Tokenizer t, bool branch)
        {
            t.SkipSpace();
            var op = new Operand { Column = t.Column };
            int size = 0;
            if (char.IsLetter(t.Peek))
            {
                int save = t.Position;
                var (w, _) = t.Word();
                string lw = w.ToLowerInvariant();
                int sz = lw switch
                {
                    "byte" => 1,
                    "word" => 2,
                    "dword" => 4,
                    "qword" => 8,
                    _ => 0,
                };
                if (sz != 0)
                {
                    size = sz;
                    t.SkipSpace();
                    int save2 = t.Position;
                    var (p, _) = t.Word();
                    if (!p.Equals("ptr", StringComparison.OrdinalIgnoreCase)) t.Position = save2;
                    t.SkipSpace();
                    if (t.Peek != '[')
                    {
                        // "dword 5": a size on an immediate is accepted and ignored (Iced picks the form).
                        var imm = ParseOperand(t, branch);
                        if (imm.Kind == Kind.Memory) imm.Size = size;
                        return imm;
                    }
                }
                else
                {
                    if (ParseRegister(w, out var reg)) { op.Kind = Kind.Register; op.Register = reg; return op; }
                    if (_labels.ContainsKey(w)) { op.Kind = Kind.LabelRef; op.LabelName = w; return op; }
                    if (branch) throw Error(op.Column, $"undefined label '{w}'");
                    t.Position = save;
                    throw Error(op.Column, $"unknown register '{w}'");
                }
            }
            if (t.Peek == '[')
            {
                op.Kind = Kind.Memory;
                op.Size = size;
                t.Advance();
                ParseAddress(t, op);
                return op;
            }
            var (v, neg) = t.Number(op.Column);
            op.Kind = Kind.Immediate;
            op.Value = v;
            op.Negative = neg;
            return op;
        }

        private void ParseAddress(Tokenizer t, Operand op)
        {
            bool first = true;
            while (true)
            {
                t.SkipSpace();
                if (t.Peek == ']') { t.Advance(); break; }
                int sign = 1;
                if (!first)
                {
                    if (t.Peek == '+') t.Advance();
                    else if (t.Peek == '-') { sign = -1; t.Advance(); }
                    else throw Error(t.Column, $"expected '+', '-' or ']' in the address, found '{(t.AtEnd ? "end of line" : t.Peek.ToString())}'");
                    t.SkipSpace();
                }
                else if (t.Peek == '-') { sign = -1; t.Advance(); t.SkipSpace(); }
                first = false;
                int col = t.Column;
                if (char.IsLetter(t.Peek) || t.Peek == '_')
                {
                    var (w, _) = t.Word();
                    if (w.Equals("rel", StringComparison.OrdinalIgnoreCase)) { first = true; continue; }
                    if (_labels.ContainsKey(w))
                    {
                        if (op.LabelName is not null || op.Base != Register.None || op.Index != Register.None || sign < 0)
                            throw Error(col, $"label '{w}' can only be used alone in an address ([{w}], RIP-relative)");
                        op.LabelName = w;
                        continue;
                    }
                    if (!ParseRegister(w, out var reg) || !(reg.IsGPR64() || reg.IsGPR32()))
                        throw Error(col, $"unknown register '{w}'");
                    if (sign < 0) throw Error(col, "a register cannot be subtracted in an address");
                    t.SkipSpace();
                    if (t.Peek == '*')
                    {
                        t.Advance();
                        t.SkipSpace();
                        int scol = t.Column;
                        var (s, _) = t.Number(scol);
                        AddIndex(op, reg, s, scol);
                    }
                    else if (op.Base == Register.None) op.Base = reg;
                    else if (op.Index == Register.None) op.Index = reg;
                    else throw Error(col, "an address has at most a base and an index register");
                    continue;
                }
                var (v, neg) = t.Number(col);
                t.SkipSpace();
                if (t.Peek == '*')
                {
                    t.Advance();
                    t.SkipSpace();
                    int rcol = t.Column;
                    var (w, _) = t.Word();
                    if (!ParseRegister(w, out var reg)) throw Error(rcol, $"unknown register '{w}'");
                    AddIndex(op, reg, v, col);
                    continue;
                }
                long d = neg ? -(long)v : (long)v;
                op.Displacement += sign * d;
            }
            if (op.LabelName is not null && op.Displacement != 0)
                throw Error(op.Column, "a label in an address cannot have a displacement");
        }

        private void AddIndex(Operand op, Register reg, ulong scale, int col)
        {
            if (scale is not (1 or 2 or 4 or 8)) throw Error(col, $"scale must be 1, 2, 4 or 8, not {scale}");
            if (op.Index != Register.None) throw Error(col, "an address has at most one index register");
            op.Index = reg;
            op.Scale = (int)scale;
        }

        private void Emit(string mnemonic, int col, List<string> prefixes, List<Operand> operands)
        {
            string name = mnemonic switch { "int" => "int_", _ => mnemonic };
            if (!Methods.TryGetValue(name, out var candidates)) throw Error(col, $"unknown instruction '{mnemonic}'");
            object target = _asm;
            foreach (var p in prefixes)
                target = typeof(Assembler).GetProperty(p)!.GetValue(target)!;
            foreach (var m in candidates)
            {
                var ps = m.GetParameters();
                if (ps.Length != operands.Count) continue;
                var args = new object[ps.Length];
                bool ok = true;
                for (int i = 0; i < ps.Length && ok; i++) ok = TryConvert(operands[i], ps[i].ParameterType, out args[i]!);
                if (!ok) continue;
                try
                {
                    m.Invoke(target, args);
                }
                catch (TargetInvocationException e) when (e.InnerException is not null)
                {
                    string why = e.InnerException.Message;
                    if (operands.Any(o => o.Kind == Kind.Memory && o.Size == 0))
                        why += " (give the memory operand a size: byte, word, dword or qword)";
                    throw Error(col, $"'{mnemonic}': {why}");
                }
                return;
            }
            if (operands.Any(o => o.Kind == Kind.Memory && o.Size == 0) && operands.All(o => o.Kind != Kind.Register))
                throw Error(col, $"'{mnemonic}' needs an operand size: write byte, word, dword or qword before the memory operand");
            throw Error(col, $"'{mnemonic}' does not take operands ({string.Join(", ", operands.Select(Describe))})");
        }

        private static string Describe(Operand o) => o.Kind switch
        {
            Kind.Register => o.Register.ToString().ToLowerInvariant(),
            Kind.Memory => "memory",
            Kind.LabelRef => "label",
            _ => "immediate",
        };

        private bool TryConvert(Operand o, Type t, out object value)
        {
            value = null!;
            switch (o.Kind)
            {
                case Kind.Register:
                {
                    var r = o.Register;
                    if (t == typeof(AssemblerRegister8) && r.IsGPR8()) { value = new AssemblerRegister8(r); return true; }
                    if (t == typeof(AssemblerRegister16) && r.IsGPR16()) { value = new AssemblerRegister16(r); return true; }
                    if (t == typeof(AssemblerRegister32) && r.IsGPR32()) { value = new AssemblerRegister32(r); return true; }
                    if (t == typeof(AssemblerRegister64) && r.IsGPR64()) { value = new AssemblerRegister64(r); return true; }
                    if (t == typeof(AssemblerRegisterCR) && r.IsCR()) { value = new AssemblerRegisterCR(r); return true; }
                    return false;
                }
                case Kind.Memory:
                    if (t != typeof(AssemblerMemoryOperand)) return false;
                    value = BuildMemory(o);
                    return true;
                case Kind.LabelRef:
                    if (t != typeof(Label)) return false;
                    value = _labels[o.LabelName!];
                    return true;
                default:
                    return TryImmediate(o, t, out value);
            }
        }

        private AssemblerMemoryOperandFactory Factory(int size) => size switch
        {
            1 => AssemblerRegisters.__byte_ptr,
            2 => AssemblerRegisters.__word_ptr,
            4 => AssemblerRegisters.__dword_ptr,
            8 => AssemblerRegisters.__qword_ptr,
            _ => AssemblerRegisters.__,
        };

        /// <summary>Builds [base + index*scale + disp] with Iced's operator API (its constructor is internal).</summary>
        private AssemblerMemoryOperand BuildMemory(Operand o)
        {
            var f = Factory(o.Size);
            if (o.LabelName is not null) return f[_labels[o.LabelName]];
            if (o.Base == Register.None && o.Index == Register.None) return f[o.Displacement];
            bool wide = (o.Base != Register.None ? o.Base : o.Index).IsGPR64();
            if ((o.Base != Register.None && o.Base.IsGPR64() != wide) || (o.Index != Register.None && o.Index.IsGPR64() != wide))
                throw Error(o.Column, "base and index registers must both be 64-bit or both 32-bit");
            AssemblerMemoryOperand mem;
            if (wide)
            {
                if (o.Index == Register.None) mem = new AssemblerRegister64(o.Base) + 0L;
                else
                {
                    var scaled = new AssemblerRegister64(o.Index) * o.Scale;
                    mem = o.Base == Register.None ? scaled : new AssemblerRegister64(o.Base) + scaled;
                }
            }
            else
            {
                if (o.Index == Register.None) mem = new AssemblerRegister32(o.Base) + 0L;
                else
                {
                    var scaled = new AssemblerRegister32(o.Index) * o.Scale;
                    mem = o.Base == Register.None ? scaled : new AssemblerRegister32(o.Base) + scaled;
                }
            }
            return f[mem + o.Displacement];
        }

        private static bool TryImmediate(Operand o, Type t, out object value)
        {
            value = null!;
            ulong v = o.Value;
            if (o.Negative)
            {
                if (v > (1UL << 63)) return false;
                long s = -(long)v;
                if (t == typeof(sbyte) && s >= sbyte.MinValue) { value = (sbyte)s; return true; }
                if (t == typeof(short) && s >= short.MinValue) { value = (short)s; return true; }
                if (t == typeof(int) && s >= int.MinValue) { value = (int)s; return true; }
                if (t == typeof(long)) { value = s; return true; }
                return false;
            }
            if (t == typeof(sbyte) && v <= (ulong)sbyte.MaxValue) { value = (sbyte)v; return true; }
            if (t == typeof(short) && v <= (ulong)short.MaxValue) { value = (short)v; return true; }
            if (t == typeof(int) && v <= int.MaxValue) { value = (int)v; return true; }
            if (t == typeof(long) && v <= long.MaxValue) { value = (long)v; return true; }
            if (t == typeof(byte) && v <= byte.MaxValue) { value = (byte)v; return true; }
            if (t == typeof(ushort) && v <= ushort.MaxValue) { value = (ushort)v; return true; }
            if (t == typeof(uint) && v <= uint.MaxValue) { value = (uint)v; return true; }
            if (t == typeof(ulong)) { value = v; return true; }
            return false;
        }

        private sealed class Tokenizer
        {
            private readonly string _s;
            private readonly Session _session;
            public int Position;
            public Tokenizer(string s, Session session) { _s = s; _session = session; }
            public int Column => Position + 1;
            public char Peek => Position < _s.Length ? _s[Position] : '\0';
            public void Advance() => Position++;
            public bool AtEnd { get { SkipSpace(); return Position >= _s.Length; } }
            public string Rest => _s.Substring(Position).Trim();
            public void SkipSpace() { while (Position < _s.Length && char.IsWhiteSpace(_s[Position])) Position++; }

            public (string Word, int Column) Word()
            {
                SkipSpace();
                int start = Position;
                while (Position < _s.Length && (char.IsLetterOrDigit(_s[Position]) || _s[Position] is '_' or '.' or '$' or '@')) Position++;
                return (_s.Substring(start, Position - start), start + 1);
            }

            public bool TryComma()
            {
                SkipSpace();
                if (Peek != ',') return false;
                Position++;
                return true;
            }

            public bool TryString(out string value)
            {
                char q = Peek;
                int end = _s.IndexOf(q, Position + 1);
                if (end < 0) throw _session.Error(Column, "unterminated string");
                value = _s.Substring(Position + 1, end - Position - 1);
                Position = end + 1;
                return true;
            }

            /// <summary>A number: decimal, 0x.., 0b.., ..h, or 'c'; returns magnitude and sign.</summary>
            public (ulong Value, bool Negative) Number(int column)
            {
                SkipSpace();
                bool neg = false;
                if (Peek == '-') { neg = true; Position++; SkipSpace(); }
                else if (Peek == '+') { Position++; SkipSpace(); }
                if (Peek == '\'' && Position + 2 < _s.Length && _s[Position + 2] == '\'')
                {
                    ulong c = _s[Position + 1];
                    Position += 3;
                    return (c, neg);
                }
                int start = Position;
                while (Position < _s.Length && (char.IsLetterOrDigit(_s[Position]) || _s[Position] == '_')) Position++;
                string tok = _s.Substring(start, Position - start).Replace("_", "");
                if (tok.Length == 0) throw _session.Error(column, $"expected a number, found '{(start < _s.Length ? _s.Substring(start).Trim() : "end of line")}'");
                ulong v;
                bool ok;
                string lower = tok.ToLowerInvariant();
                if (lower.StartsWith("0x")) ok = ulong.TryParse(lower.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out v);
                else if (lower.StartsWith("0b")) { ok = TryBinary(lower.Substring(2), out v); }
                else if (lower.EndsWith('h') && char.IsDigit(lower[0])) ok = ulong.TryParse(lower.AsSpan(0, lower.Length - 1), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out v);
                else ok = ulong.TryParse(lower, NumberStyles.None, CultureInfo.InvariantCulture, out v);
                if (!ok)
                {
                    if (char.IsLetter(tok[0])) throw _session.Error(start + 1, $"unknown register '{tok}'");
                    throw _session.Error(start + 1, $"'{tok}' is not a number");
                }
                return (v, neg);
            }

            private static bool TryBinary(string s, out ulong v)
            {
                v = 0;
                if (s.Length == 0 || s.Length > 64) return false;
                foreach (char c in s)
                {
                    if (c is not ('0' or '1')) return false;
                    v = (v << 1) | (c == '1' ? 1UL : 0UL);
                }
                return true;
            }
        }
    }

    /// <summary>NASM register names (r8b..r15b as well as Iced's r8l..r15l), cr0-cr8.</summary>
    private static bool ParseRegister(string name, out Register reg)
    {
        string n = name.ToLowerInvariant();
        if (n.Length >= 3 && n[0] == 'r' && n.EndsWith('b') && char.IsDigit(n[1])) n = n.Substring(0, n.Length - 1) + "l";
        if (Enum.TryParse(n, ignoreCase: true, out reg) && !char.IsDigit(n[0]) && reg != Register.None
            && (reg.IsGPR() || reg.IsCR()))
            return true;
        reg = Register.None;
        return false;
    }
}
