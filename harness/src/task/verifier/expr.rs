//! A small LaTeX / plain-text math expression parser and evaluator: enough of the notation that
//! final answers use (numbers, `\frac`, `\sqrt`, powers, implicit products, `\pi`, `e`, common
//! functions, `|x|`, `n!`, `\binom`) to decide equivalence by evaluating both sides.
use std::collections::BTreeMap;

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Num(f64),
    Var(String),
    Pi,
    E,
    Inf,
    Neg(Box<Expr>),
    Add(Box<Expr>, Box<Expr>),
    Sub(Box<Expr>, Box<Expr>),
    Mul(Box<Expr>, Box<Expr>),
    Div(Box<Expr>, Box<Expr>),
    Pow(Box<Expr>, Box<Expr>),
    Func(Func, Box<Expr>),
    /// `\log_b x`.
    Log(Box<Expr>, Box<Expr>),
    /// `\binom{n}{k}`.
    Binom(Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Sqrt,
    Abs,
    Sin,
    Cos,
    Tan,
    Cot,
    Sec,
    Csc,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    Ln,
    Log10,
    Exp,
    Floor,
    Ceil,
    Factorial,
}

impl Func {
    fn from_command(name: &str) -> Option<Func> {
        Some(match name {
            "sin" => Func::Sin,
            "cos" => Func::Cos,
            "tan" => Func::Tan,
            "cot" => Func::Cot,
            "sec" => Func::Sec,
            "csc" => Func::Csc,
            "arcsin" => Func::Asin,
            "arccos" => Func::Acos,
            "arctan" => Func::Atan,
            "sinh" => Func::Sinh,
            "cosh" => Func::Cosh,
            "tanh" => Func::Tanh,
            "ln" => Func::Ln,
            "log" | "lg" => Func::Log10,
            "exp" => Func::Exp,
            _ => return None,
        })
    }

    fn apply(self, x: f64) -> f64 {
        match self {
            Func::Sqrt => x.sqrt(),
            Func::Abs => x.abs(),
            Func::Sin => x.sin(),
            Func::Cos => x.cos(),
            Func::Tan => x.tan(),
            Func::Cot => 1.0 / x.tan(),
            Func::Sec => 1.0 / x.cos(),
            Func::Csc => 1.0 / x.sin(),
            Func::Asin => x.asin(),
            Func::Acos => x.acos(),
            Func::Atan => x.atan(),
            Func::Sinh => x.sinh(),
            Func::Cosh => x.cosh(),
            Func::Tanh => x.tanh(),
            Func::Ln => x.ln(),
            Func::Log10 => x.log10(),
            Func::Exp => x.exp(),
            Func::Floor => x.floor(),
            Func::Ceil => x.ceil(),
            Func::Factorial => factorial(x),
        }
    }
}

fn factorial(x: f64) -> f64 {
    if x < 0.0 || x.fract() != 0.0 || x > 170.0 {
        return f64::NAN;
    }
    (1..=x as u64).map(|k| k as f64).product()
}

fn binom(n: f64, k: f64) -> f64 {
    if k.fract() != 0.0 || !(0.0..=1000.0).contains(&k) {
        return f64::NAN;
    }
    (0..k as u64).fold(1.0, |acc, i| acc * (n - i as f64) / (i as f64 + 1.0))
}

impl Expr {
    /// Value with the given variable assignment (a missing variable is NaN).
    pub fn eval(&self, vars: &BTreeMap<String, f64>) -> f64 {
        use Expr::*;
        match self {
            Num(v) => *v,
            Var(name) => vars.get(name).copied().unwrap_or(f64::NAN),
            Pi => std::f64::consts::PI,
            E => std::f64::consts::E,
            Inf => f64::INFINITY,
            Neg(a) => -a.eval(vars),
            Add(a, b) => a.eval(vars) + b.eval(vars),
            Sub(a, b) => a.eval(vars) - b.eval(vars),
            Mul(a, b) => a.eval(vars) * b.eval(vars),
            Div(a, b) => a.eval(vars) / b.eval(vars),
            Pow(a, b) => pow(a.eval(vars), b.eval(vars)),
            Func(f, a) => f.apply(a.eval(vars)),
            Log(base, a) => a.eval(vars).ln() / base.eval(vars).ln(),
            Binom(n, k) => binom(n.eval(vars), k.eval(vars)),
        }
    }

    /// Variable names, sorted.
    pub fn vars(&self, out: &mut Vec<String>) {
        use Expr::*;
        match self {
            Var(name) => {
                if !out.contains(name) {
                    out.push(name.clone());
                }
            }
            Num(_) | Pi | E | Inf => {}
            Neg(a) | Func(_, a) => a.vars(out),
            Add(a, b) | Sub(a, b) | Mul(a, b) | Div(a, b) | Pow(a, b) | Log(a, b) | Binom(a, b) => {
                a.vars(out);
                b.vars(out);
            }
        }
    }
}

/// Real powers, with odd roots of negative numbers (`(-8)^{1/3} = -2`) as in school algebra.
fn pow(a: f64, b: f64) -> f64 {
    if a < 0.0 && b.fract() != 0.0 {
        let inv = 1.0 / b;
        if (inv - inv.round()).abs() < 1e-9 && (inv.round() as i64) % 2 != 0 {
            return -(-a).powf(b);
        }
    }
    a.powf(b)
}

/// A whole number followed by a proper fraction of whole numbers.
fn is_mixed_number(whole: &Expr, frac: &Expr) -> bool {
    match (whole, frac) {
        (Expr::Num(w), Expr::Div(p, q)) => match (p.as_ref(), q.as_ref()) {
            (Expr::Num(p), Expr::Num(q)) => {
                w.fract() == 0.0 && p.fract() == 0.0 && q.fract() == 0.0 && p < q
            }
            _ => false,
        },
        _ => false,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    /// A one-letter variable, with its subscript if any (`x_1`).
    Letter(String),
    Cmd(String),
    Sym(char),
}

/// Greek letters and other commands that stand for a variable.
const SYMBOL_COMMANDS: &[&str] = &[
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "varepsilon",
    "zeta",
    "eta",
    "theta",
    "vartheta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "varphi",
    "chi",
    "psi",
    "omega",
    "Gamma",
    "Delta",
    "Theta",
    "Lambda",
    "Xi",
    "Sigma",
    "Phi",
    "Psi",
    "Omega",
];

fn tokenize(s: &str) -> Option<Vec<Tok>> {
    let c: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch.is_ascii_digit()
            || (ch == '.' && c.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            while i < c.len() && (c[i].is_ascii_digit() || c[i] == '.') {
                i += 1;
            }
            // 1.5e-3 (scientific notation), not 2e (2·e)
            if i < c.len() && (c[i] == 'e' || c[i] == 'E') {
                let mut j = i + 1;
                if j < c.len() && (c[j] == '-' || c[j] == '+') {
                    j += 1;
                }
                if j < c.len() && c[j].is_ascii_digit() {
                    while j < c.len() && c[j].is_ascii_digit() {
                        j += 1;
                    }
                    i = j;
                }
            }
            let text: String = c[start..i].iter().collect();
            out.push(Tok::Num(text.parse().ok()?));
        } else if ch.is_ascii_alphabetic() {
            i += 1;
            let mut name = ch.to_string();
            if c.get(i) == Some(&'_') {
                let (sub, next) = subscript(&c, i + 1)?;
                name = format!("{name}_{sub}");
                i = next;
            }
            out.push(Tok::Letter(name));
        } else if ch == '\\' {
            let start = i + 1;
            i = start;
            while i < c.len() && c[i].is_ascii_alphabetic() {
                i += 1;
            }
            if i == start {
                // `\{`, `\}`, `\|`: an escaped symbol
                let sym = *c.get(i)?;
                i += 1;
                out.push(Tok::Sym(sym));
                continue;
            }
            let name: String = c[start..i].iter().collect();
            if SYMBOL_COMMANDS.contains(&name.as_str()) {
                let mut var = name;
                if c.get(i) == Some(&'_') {
                    let (sub, next) = subscript(&c, i + 1)?;
                    var = format!("{var}_{sub}");
                    i = next;
                }
                out.push(Tok::Letter(var));
            } else {
                out.push(Tok::Cmd(name));
            }
        } else if "+-*/^()[]{}|!,_=".contains(ch) {
            out.push(Tok::Sym(ch));
            i += 1;
        } else if ch == '\'' {
            // primes (f'(x)) are not supported
            return None;
        } else {
            return None;
        }
    }
    Some(out)
}

/// A subscript starting at `i` (after `_`): `{…}` or one character. Returns it and the next index.
fn subscript(c: &[char], i: usize) -> Option<(String, usize)> {
    if c.get(i) == Some(&'{') {
        let close = i + c[i..].iter().position(|&x| x == '}')?;
        Some((c[i + 1..close].iter().collect(), close + 1))
    } else {
        Some((c.get(i)?.to_string(), i + 1))
    }
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

/// Parse a whole expression; `None` if any of it is not understood.
pub fn parse(s: &str) -> Option<Expr> {
    let toks = tokenize(s)?;
    if toks.is_empty() {
        return None;
    }
    let mut p = Parser { toks, pos: 0 };
    let e = p.expr()?;
    (p.pos == p.toks.len()).then_some(e)
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn eat_sym(&mut self, ch: char) -> bool {
        if self.peek() == Some(&Tok::Sym(ch)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_cmd(&mut self, name: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Cmd(c)) if c == name) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expr(&mut self) -> Option<Expr> {
        let mut lhs = self.term()?;
        loop {
            if self.eat_sym('+') {
                lhs = Expr::Add(Box::new(lhs), Box::new(self.term()?));
            } else if self.eat_sym('-') {
                lhs = Expr::Sub(Box::new(lhs), Box::new(self.term()?));
            } else {
                return Some(lhs);
            }
        }
    }

    fn term(&mut self) -> Option<Expr> {
        let mut lhs = self.unary()?;
        loop {
            if self.eat_sym('*') || self.eat_cmd("cdot") || self.eat_cmd("times") {
                lhs = Expr::Mul(Box::new(lhs), Box::new(self.unary()?));
            } else if self.eat_sym('/') || self.eat_cmd("div") {
                lhs = Expr::Div(Box::new(lhs), Box::new(self.unary()?));
            } else if self.starts_atom() {
                let frac = matches!(self.peek(), Some(Tok::Cmd(c)) if c == "frac");
                let rhs = self.power()?;
                // `2\frac{1}{2}`: a mixed number, 2 + 1/2
                lhs = if frac && is_mixed_number(&lhs, &rhs) {
                    Expr::Add(Box::new(lhs), Box::new(rhs))
                } else {
                    Expr::Mul(Box::new(lhs), Box::new(rhs))
                };
            } else {
                return Some(lhs);
            }
        }
    }

    fn unary(&mut self) -> Option<Expr> {
        if self.eat_sym('-') {
            Some(Expr::Neg(Box::new(self.unary()?)))
        } else if self.eat_sym('+') {
            self.unary()
        } else {
            self.power()
        }
    }

    fn power(&mut self) -> Option<Expr> {
        let base = self.postfix()?;
        if self.eat_sym('^') {
            let exp = self.exponent()?;
            Some(Expr::Pow(Box::new(base), Box::new(exp)))
        } else {
            Some(base)
        }
    }

    /// `^{…}`, `^2`, `^x`, `^-1`, `^\frac12`.
    fn exponent(&mut self) -> Option<Expr> {
        if self.eat_sym('-') {
            return Some(Expr::Neg(Box::new(self.exponent()?)));
        }
        let base = self.atom()?;
        if self.eat_sym('^') {
            let exp = self.exponent()?;
            return Some(Expr::Pow(Box::new(base), Box::new(exp)));
        }
        Some(base)
    }

    fn postfix(&mut self) -> Option<Expr> {
        let mut e = self.atom()?;
        while self.eat_sym('!') {
            e = Expr::Func(Func::Factorial, Box::new(e));
        }
        Some(e)
    }

    /// Whether the next token can start a factor of an implicit product (`2x`, `3\sqrt{2}`).
    fn starts_atom(&self) -> bool {
        match self.peek() {
            Some(Tok::Num(_)) | Some(Tok::Letter(_)) => true,
            Some(Tok::Sym(c)) => matches!(c, '(' | '{' | '['),
            Some(Tok::Cmd(c)) => !matches!(
                c.as_str(),
                "cdot" | "times" | "div" | "rfloor" | "rceil" | "right" | "pm" | "mp"
            ),
            None => false,
        }
    }

    fn group(&mut self, open: char, close: char) -> Option<Expr> {
        if !self.eat_sym(open) {
            return None;
        }
        let e = self.expr()?;
        self.eat_sym(close).then_some(e)
    }

    /// A `{…}` argument, or a single token (`\frac12`, `\sqrt2`).
    fn arg(&mut self) -> Option<Expr> {
        if self.peek() == Some(&Tok::Sym('{')) {
            return self.group('{', '}');
        }
        match self.peek()?.clone() {
            Tok::Num(v) => {
                self.pos += 1;
                // `\frac12`: LaTeX takes one digit per argument
                let text = format!("{v}");
                if text.len() > 1 && text.chars().all(|c| c.is_ascii_digit()) {
                    let (first, rest) = text.split_at(1);
                    self.toks.insert(self.pos, Tok::Num(rest.parse().ok()?));
                    return Some(Expr::Num(first.parse().ok()?));
                }
                Some(Expr::Num(v))
            }
            _ => self.atom(),
        }
    }

    fn atom(&mut self) -> Option<Expr> {
        let tok = self.peek()?.clone();
        match tok {
            Tok::Num(v) => {
                self.pos += 1;
                Some(Expr::Num(v))
            }
            Tok::Letter(name) => {
                self.pos += 1;
                Some(if name == "e" {
                    Expr::E
                } else {
                    Expr::Var(name)
                })
            }
            Tok::Sym('(') => self.group('(', ')'),
            Tok::Sym('{') => self.group('{', '}'),
            Tok::Sym('[') => self.group('[', ']'),
            Tok::Sym('|') => {
                self.pos += 1;
                let e = self.expr()?;
                self.eat_sym('|')
                    .then(|| Expr::Func(Func::Abs, Box::new(e)))
            }
            Tok::Cmd(name) => {
                self.pos += 1;
                self.command(&name)
            }
            Tok::Sym(_) => None,
        }
    }

    fn command(&mut self, name: &str) -> Option<Expr> {
        match name {
            "frac" | "dfrac" | "tfrac" | "cfrac" => {
                let num = self.arg()?;
                let den = self.arg()?;
                Some(Expr::Div(Box::new(num), Box::new(den)))
            }
            "binom" | "dbinom" | "tbinom" => {
                let n = self.arg()?;
                let k = self.arg()?;
                Some(Expr::Binom(Box::new(n), Box::new(k)))
            }
            "sqrt" => {
                if self.peek() == Some(&Tok::Sym('[')) {
                    let n = self.group('[', ']')?;
                    let x = self.arg()?;
                    let inv = Expr::Div(Box::new(Expr::Num(1.0)), Box::new(n));
                    return Some(Expr::Pow(Box::new(x), Box::new(inv)));
                }
                Some(Expr::Func(Func::Sqrt, Box::new(self.arg()?)))
            }
            "pi" => Some(Expr::Pi),
            "infty" | "infin" => Some(Expr::Inf),
            "lfloor" | "lceil" => {
                let e = self.expr()?;
                let (close, f) = if name == "lfloor" {
                    ("rfloor", Func::Floor)
                } else {
                    ("rceil", Func::Ceil)
                };
                self.eat_cmd(close).then(|| Expr::Func(f, Box::new(e)))
            }
            "lvert" | "vert" => {
                let e = self.expr()?;
                (self.eat_cmd("rvert") || self.eat_cmd("vert"))
                    .then(|| Expr::Func(Func::Abs, Box::new(e)))
            }
            "log" if self.peek() == Some(&Tok::Sym('_')) => {
                self.pos += 1;
                let base = self.arg()?;
                let x = self.func_arg()?;
                Some(Expr::Log(Box::new(base), Box::new(x)))
            }
            _ => {
                let f = Func::from_command(name)?;
                // `\sin^2 x` = (sin x)^2
                let power = if self.eat_sym('^') {
                    Some(self.exponent()?)
                } else {
                    None
                };
                let applied = Expr::Func(f, Box::new(self.func_arg()?));
                Some(match power {
                    Some(p) => Expr::Pow(Box::new(applied), Box::new(p)),
                    None => applied,
                })
            }
        }
    }

    /// A function's argument: a bracketed group, or the factors up to the next `+`/`-`
    /// (`\sin 2x` = sin(2x)).
    fn func_arg(&mut self) -> Option<Expr> {
        if matches!(self.peek(), Some(Tok::Sym('(')) | Some(Tok::Sym('{'))) {
            return self.power();
        }
        let mut e = self.power()?;
        while matches!(self.peek(), Some(Tok::Num(_)) | Some(Tok::Letter(_))) {
            e = Expr::Mul(Box::new(e), Box::new(self.power()?));
        }
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn val(s: &str) -> f64 {
        parse(s)
            .unwrap_or_else(|| panic!("parse {s}"))
            .eval(&BTreeMap::new())
    }

    #[test]
    fn evaluates_latex_and_plain_forms() {
        let cases = [
            ("\\frac{1}{2}", 0.5),
            ("\\frac12", 0.5),
            ("\\frac{\\sqrt{2}}{2}", std::f64::consts::FRAC_1_SQRT_2),
            ("2\\sqrt{3}", 2.0 * 3f64.sqrt()),
            ("\\sqrt[3]{8}", 2.0),
            ("2^{10}", 1024.0),
            ("2^10", 1024.0),
            ("-3^2", -9.0),
            ("(1+2)(3+4)", 21.0),
            ("5!", 120.0),
            ("\\binom{5}{2}", 10.0),
            ("\\log_2 8", 3.0),
            ("\\log_{2}(8)", 3.0),
            ("1.5e3", 1500.0),
            ("3\\times 10^{2}", 300.0),
            ("|-4|", 4.0),
            ("\\lfloor 2.5 \\rfloor", 2.0),
            ("\\sin^2 0 + \\cos^2 0", 1.0),
            ("\\sqrt2", std::f64::consts::SQRT_2),
            ("(-8)^{1/3}", -2.0),
            ("2\\pi", std::f64::consts::TAU),
            ("2\\frac{1}{2}", 2.5),
            ("2\\cdot\\frac{1}{2}", 1.0),
        ];
        for (s, want) in cases {
            let got = val(s);
            assert!((got - want).abs() < 1e-9, "{s}: {got} vs {want}");
        }
    }

    #[test]
    fn variables_and_subscripts() {
        let e = parse("x_1 + 2\\alpha y").unwrap();
        let mut v = vec![];
        e.vars(&mut v);
        assert_eq!(v, ["x_1", "alpha", "y"]);
        let vars = BTreeMap::from([
            ("x_1".to_string(), 1.0),
            ("alpha".to_string(), 2.0),
            ("y".to_string(), 3.0),
        ]);
        assert_eq!(e.eval(&vars), 13.0);
    }

    #[test]
    fn rejects_what_it_does_not_understand() {
        for s in [
            "",
            "x +",
            "\\frac{1}",
            "(1, 2",
            "a ≤ b",
            "\\unknown{3}",
            "f'(x)",
        ] {
            assert!(parse(s).is_none(), "{s}");
        }
    }
}
