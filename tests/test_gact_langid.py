"""Language identifier: accuracy on hand-written labelled snippets, fences, and the no-code fallback."""

import pytest

from steering.gact import langid

SNIPPETS = {
    "python": [
        "import numpy as np\n\ndef rk4(f, y0, t):\n    y = np.zeros((len(t), len(y0)))\n    y[0] = y0\n"
        "    for i in range(len(t) - 1):\n        h = t[i+1] - t[i]\n",
        "def gc_content(seq):\n    seq = seq.upper()\n    return (seq.count('G') + seq.count('C')) / len(seq)\n\n"
        "print(gc_content('ATGC'))",
        "class Matrix:\n    def __init__(self, rows):\n        self.rows = rows\n\n    def __mul__(self, other):\n"
        "        return Matrix([[sum(a*b for a, b in zip(r, c)) for c in zip(*other.rows)] for r in self.rows])",
        "from math import sqrt\n\nx = 2.0\nwhile abs(x * x - 2) > 1e-12:\n    x = x - (x * x - 2) / (2 * x)\n"
        "print(f\"sqrt(2) = {x}\")",
        "import random\n\ninside = 0\nfor _ in range(1_000_000):\n    x, y = random.random(), random.random()\n"
        "    if x*x + y*y <= 1:\n        inside += 1\nprint(4 * inside / 1_000_000)",
    ],
    "cpp": [
        "#include <iostream>\n#include <vector>\n\nint main() {\n    std::vector<double> x(10, 0.0);\n"
        "    std::cout << x.size() << std::endl;\n    return 0;\n}",
        "#include <cmath>\nusing namespace std;\n\ndouble f(double x) { return sin(x); }\n\n"
        "double simpson(double a, double b, int n) {\n    double h = (b - a) / n;\n",
        "template <typename T>\nT dot(const std::vector<T>& a, const std::vector<T>& b) {\n    T s = 0;\n"
        "    for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];\n    return s;\n}",
        "class Particle {\npublic:\n    Particle(double m) : mass_(m) {}\n    double mass() const { return mass_; }\n"
        "private:\n    double mass_;\n};\nauto p = std::make_unique<Particle>(1.0);",
        "#include <random>\nstd::mt19937 gen(42);\nstd::uniform_real_distribution<double> dist(0.0, 1.0);\n"
        "for (int i = 0; i < n; ++i) {\n    double x = dist(gen);\n}",
    ],
    "java": [
        "public class Main {\n    public static void main(String[] args) {\n        System.out.println(\"hi\");\n    }\n}",
        "import java.util.ArrayList;\n\npublic class Sieve {\n    public static List<Integer> primes(int n) {\n"
        "        boolean[] composite = new boolean[n + 1];\n",
        "double[] x = new double[n];\nfor (int i = 0; i < x.length; i++) {\n    x[i] = Math.sin(i * 0.1);\n}\n"
        "System.out.printf(\"%f%n\", x[0]);",
        "private static double integrate(double a, double b, int n) {\n    double h = (b - a) / n;\n"
        "    double sum = 0.0;\n    return sum * h;\n}",
        "@Override\npublic String toString() {\n    return \"Vector(\" + x + \", \" + y + \")\";\n}",
    ],
    "julia": [
        "function rk4(f, y0, t)\n    y = zeros(length(t))\n    y[1] = y0\n    for i in 1:length(t)-1\n"
        "        h = t[i+1] - t[i]\n    end\n    return y\nend",
        "using LinearAlgebra\n\nA = rand(3, 3)\nx = A \\ ones(3)\nprintln(norm(A * x - ones(3)))",
        "function gc_content(seq::String)::Float64\n    n = count(c -> c in ('G', 'C'), seq)\n"
        "    return n / length(seq)\nend",
        "x = collect(0:0.1:1)\ny = sin.(x) .^ 2\n@time s = sum(y)\nprintln(\"sum = \", s)",
        "mutable struct Particle\n    x::Vector{Float64}\n    m::Float64\nend\n\nfor i in 1:n\n    push!(ps, p)\nend",
    ],
}

CASES = [(lang, code) for lang, codes in SNIPPETS.items() for code in codes]


def test_accuracy_on_labelled_snippets():
    correct = sum(langid.classify(code).language == lang for lang, code in CASES)
    assert correct / len(CASES) >= 0.9, [(lang, langid.classify(c).language) for lang, c in CASES]


@pytest.mark.parametrize("lang", sorted(SNIPPETS))
def test_fenced_answers(lang):
    text = f"Here is the code:\n\n```{ {'cpp': 'cpp'}.get(lang, lang)}\n{SNIPPETS[lang][0]}\n```\nThis works."
    found = langid.identify(text)
    assert found.has_code and found.language == lang and 0 < found.confidence <= 1


def test_unterminated_fence_is_code():
    text = "Sure!\n```cpp\n#include <vector>\nstd::vector<double> v;\nfor (int i = 0; i < n"
    assert langid.identify(text).language == "cpp"
    assert langid.is_valid_code(text, "cpp")


def test_prose_without_code_is_none():
    found = langid.identify("The heat equation describes how temperature diffuses. I can explain the method "
                            "in words: discretise space, then step forward in time.")
    assert found.language is None and not found.has_code and found.label == "none"
    assert not langid.is_valid_code("no code here at all", "cpp")


def test_validity_requires_content_not_just_fence():
    text = "```cpp\ndef f(x):\n    return x\n```"
    assert langid.identify(text).fence_tag == "cpp"
    assert not langid.is_valid_code(text, "cpp")


def test_unbalanced_code_is_not_valid():
    assert not langid.is_valid_code("```cpp\nint main() { std::cout << 1; }}}\n```", "cpp")


def test_langid_eval_counts_and_confusion():
    from steering.gact.langid_eval import evaluate_langid, windows

    snippets = [(lang, code, "hand") for lang, code in CASES] + [("rust", "fn main() {\n    let mut x = 1;\n}", "hand")]
    report = evaluate_langid(snippets)
    expected = sum(langid.classify(code).language == lang for lang, code, _ in snippets) / len(snippets)
    assert report.n == len(snippets) and report.accuracy == pytest.approx(expected)
    assert sum(sum(row.values()) for row in report.confusion.values()) == len(snippets)
    assert report.per_language["rust"]["n"] == 1 and report.sources == {"hand": len(snippets)}
    assert 0.9 <= report.accuracy_targets <= 1.0  # rust is not one of the four target languages
    # comment-only windows are skipped, code windows kept
    text = "\n".join(["// licence"] * 12 + ["int x = 1;", "x += 2;", "f(x);", "return x;"] + ["// end"] * 8)
    assert windows(text, 12, 4) == ["\n".join(["int x = 1;", "x += 2;", "f(x);", "return x;"] + ["// end"] * 8)]
