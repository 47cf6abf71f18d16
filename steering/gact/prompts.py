"""Scientific-computing coding prompts that name no programming language, plus language-specific variants.

Written for this project (G-ACT, METHODS.md §2): 132 requests across numerical methods, simulation, statistics,
signal processing, data handling and bioinformatics, in varied wording. None names a language, a language-specific
library, or a file extension, so the language of the answer is the model's own choice (its "bias").

``variant(prompt, language, style)`` appends a request for one language (``language=None``: the default variant,
no language named) and then ``CODE_REQUEST``, a language-neutral request for code so that short generations show
code rather than prose. ``splits(seed)`` gives disjoint train / validation / test lists.
"""

from __future__ import annotations

import random

from workbench.data import split

LANGUAGES = ("python", "cpp", "java", "julia")
"""Languages the identifier and the variants know; ``cpp`` is the target in the experiments (as in the paper)."""

DISPLAY = {"python": "Python", "cpp": "C++", "java": "Java", "julia": "Julia"}

_SUFFIXES = (
    "Write it in {lang}.",
    "Use {lang}.",
    "Please answer with {lang} code.",
    "Implement this in {lang}.",
    "The code should be written in {lang}.",
    "I need the solution in {lang}.",
)

PROMPTS: tuple[str, ...] = (
    # linear algebra
    "Write a function that multiplies two dense matrices without using any library routines.",
    "Implement LU decomposition with partial pivoting and use it to solve a linear system.",
    "Write code that computes the Cholesky factorization of a symmetric positive definite matrix.",
    "Implement the conjugate gradient method for a sparse symmetric positive definite system.",
    "Write a program that finds the dominant eigenvalue of a matrix using power iteration.",
    "Implement Gram-Schmidt orthogonalization for a set of vectors.",
    "Write a routine that computes the QR decomposition of a matrix with Householder reflections.",
    "Code a Jacobi iterative solver for Ax = b and stop when the residual is below a tolerance.",
    "Write a Gauss-Seidel solver for a diagonally dominant linear system.",
    "Implement a compressed sparse row matrix type with a matrix-vector product.",
    "Write a function that computes the determinant of a square matrix by Gaussian elimination.",
    "Compute the inverse of a 3x3 matrix and check the result by multiplying back.",
    "Implement the Thomas algorithm for solving a tridiagonal system of equations.",
    "Write a small program that transposes a large matrix in a cache-friendly, blocked way.",
    "Implement the singular value decomposition of a 2x2 matrix in closed form.",
    # ODEs
    "Write a fourth-order Runge-Kutta integrator for a system of ordinary differential equations.",
    "Simulate a damped harmonic oscillator with the explicit Euler method and print the energy over time.",
    "Implement an adaptive step-size Runge-Kutta-Fehlberg solver.",
    "Integrate the Lorenz system for 10,000 steps and write the trajectory to a file.",
    "Solve the Lotka-Volterra predator-prey equations numerically and report the populations every 100 steps.",
    "Write a velocity Verlet integrator for a particle in a harmonic potential.",
    "Implement the implicit backward Euler method for a stiff linear ODE.",
    "Simulate a simple pendulum with large amplitude and compare the period with the small-angle formula.",
    "Numerically integrate the SIR epidemic model and find the day of peak infection.",
    "Write a leapfrog integrator for the two-body gravitational problem and check that energy is conserved.",
    "Solve a boundary value problem y'' = -y with the shooting method.",
    # PDEs
    "Solve the 1D heat equation with an explicit finite difference scheme.",
    "Implement a Crank-Nicolson solver for the one-dimensional diffusion equation.",
    "Solve the 2D Laplace equation on a square grid with Dirichlet boundary conditions using Jacobi iteration.",
    "Write a finite difference solver for the 1D wave equation with fixed ends.",
    "Implement an upwind scheme for the linear advection equation and show that it is stable for CFL <= 1.",
    "Solve the Poisson equation on a 2D grid with successive over-relaxation.",
    "Write a 1D finite element solver for -u'' = f with linear hat functions.",
    "Simulate Burgers' equation with a Lax-Friedrichs scheme.",
    "Implement a lattice Boltzmann D2Q9 simulation of flow in a channel.",
    "Write a 2D diffusion simulation on a periodic grid and output the total mass each step.",
    "Solve the steady-state temperature in a rod with a heat source using a tridiagonal solver.",
    # quadrature, roots, interpolation, optimisation
    "Implement the composite Simpson's rule and estimate the integral of sin(x) from 0 to pi.",
    "Write adaptive quadrature based on the trapezoidal rule with a tolerance parameter.",
    "Implement Gauss-Legendre quadrature with 5 points.",
    "Write Newton's method for finding a root of a function given its derivative.",
    "Implement the bisection method and use it to find the cube root of 10.",
    "Write the secant method and compare its convergence with bisection.",
    "Implement Brent's method for one-dimensional root finding.",
    "Write code for Lagrange polynomial interpolation through a set of points.",
    "Implement natural cubic spline interpolation.",
    "Fit a straight line to noisy data with ordinary least squares and report the slope and intercept.",
    "Implement gradient descent to minimise the Rosenbrock function.",
    "Write a Nelder-Mead simplex optimiser for functions of two variables.",
    "Implement golden-section search for the minimum of a unimodal function.",
    "Write a Levenberg-Marquardt routine to fit an exponential decay to data.",
    "Implement simulated annealing to minimise a function with many local minima.",
    "Compute Richardson extrapolation of a finite difference derivative.",
    "Write a function that numerically estimates the gradient of a multivariate function with central differences.",
    # Monte Carlo and random numbers
    "Estimate pi with a Monte Carlo simulation using one million random points.",
    "Implement a linear congruential random number generator and test the uniformity of its output.",
    "Write a Metropolis Monte Carlo simulation of the 2D Ising model.",
    "Implement the Box-Muller transform to generate normally distributed random numbers.",
    "Simulate a one-dimensional random walk and compute the mean squared displacement.",
    "Write a Markov chain Monte Carlo sampler for a one-dimensional Gaussian mixture.",
    "Estimate a high-dimensional integral with Monte Carlo and report the standard error.",
    "Simulate radioactive decay of 10,000 atoms and compare with the exponential law.",
    "Write a program that simulates diffusion-limited aggregation on a 2D lattice.",
    "Implement importance sampling to estimate the tail probability of a normal distribution.",
    "Write a bootstrap routine that estimates a confidence interval for the median of a sample.",
    # statistics and data
    "Compute the mean, variance and standard deviation of a dataset in a single pass with Welford's algorithm.",
    "Write a function that computes the Pearson correlation coefficient of two arrays.",
    "Implement k-means clustering for points in the plane.",
    "Write a histogram function that bins values into a given number of equal-width bins.",
    "Implement principal component analysis using the covariance matrix and power iteration.",
    "Compute a moving average and a moving standard deviation over a time series.",
    "Read a CSV file of temperature measurements and compute daily minimum, maximum and mean.",
    "Implement linear regression with several features using the normal equations.",
    "Write a kernel density estimator with a Gaussian kernel.",
    "Perform a two-sample t-test and report the t statistic.",
    "Implement logistic regression trained with batch gradient descent.",
    "Compute the median of a large array without sorting it completely (quickselect).",
    # signal processing
    "Implement the radix-2 Cooley-Tukey fast Fourier transform.",
    "Write a discrete Fourier transform and check it against the inverse transform.",
    "Design a simple low-pass FIR filter and apply it to a noisy signal.",
    "Compute the power spectrum of a sampled sine wave with added noise.",
    "Implement a 1D convolution of a signal with a kernel.",
    "Write a function that computes the autocorrelation of a time series.",
    "Implement a Kalman filter for tracking an object moving with constant velocity.",
    "Downsample an audio signal by a factor of four with anti-aliasing.",
    "Implement a 2D convolution for blurring a grayscale image with a Gaussian kernel.",
    "Detect peaks in a noisy signal using a threshold and a minimum distance between peaks.",
    # physics and chemistry simulation
    "Write an N-body gravity simulation with direct summation of forces.",
    "Implement a molecular dynamics simulation of Lennard-Jones particles in a periodic box.",
    "Compute the radial distribution function from a set of particle positions.",
    "Simulate projectile motion with air drag and find the range for several launch angles.",
    "Write a cellular automaton for Conway's Game of Life on a toroidal grid.",
    "Simulate heat conduction in a 2D plate with one hot edge until it reaches steady state.",
    "Implement a Barnes-Hut quadtree for approximating gravitational forces in 2D.",
    "Calculate the trajectory of a charged particle in uniform electric and magnetic fields.",
    "Simulate the spread of a forest fire on a grid with a probabilistic cellular automaton.",
    "Write a program that computes the electric potential of point charges on a 2D grid.",
    "Solve the time-independent Schrodinger equation for a particle in a 1D potential well with finite differences.",
    "Simulate a chain of masses connected by springs and output the displacement of the middle mass.",
    "Compute the equilibrium constant of a reaction from Gibbs free energies at several temperatures.",
    "Integrate the equations of motion of a double pendulum and save the angles.",
    "Model the cooling of a cup of coffee with Newton's law of cooling and estimate when it reaches 40 degrees.",
    # bioinformatics and other sciences
    "Compute the GC content of a DNA sequence.",
    "Implement the Needleman-Wunsch global sequence alignment algorithm.",
    "Write the Smith-Waterman local alignment algorithm with a linear gap penalty.",
    "Translate a DNA sequence into a protein sequence using the standard genetic code.",
    "Count k-mer frequencies in a long DNA string.",
    "Compute the reverse complement of a DNA sequence.",
    "Simulate logistic population growth and print the population for 50 generations.",
    "Compute the Hamming distance between two equal-length genetic sequences.",
    "Implement the Wright-Fisher model of genetic drift for a population of 100 individuals.",
    "Compute the great-circle distance between two points given by latitude and longitude.",
    # algorithms used in scientific codes
    "Implement Dijkstra's shortest path algorithm on a weighted graph stored as an adjacency list.",
    "Write a function that builds a uniform grid for neighbour search among particles.",
    "Implement a binary heap priority queue for an event-driven simulation.",
    "Compute the convex hull of a set of 2D points with the monotone chain algorithm.",
    "Write a union-find structure and use it to label connected clusters in a percolation grid.",
    "Implement the sieve of Eratosthenes and count the primes below ten million.",
    "Compute the greatest common divisor and least common multiple of two large integers.",
    "Implement fast modular exponentiation.",
    "Write code that evaluates a polynomial with Horner's rule and also returns its derivative.",
    "Implement arbitrary precision addition of two numbers stored as digit arrays.",
    "Compute the Mandelbrot set on a 200x200 grid and print it as characters.",
    "Write a parallel reduction that sums a large array of floating point numbers accurately (Kahan summation).",
    "Implement a k-d tree for nearest-neighbour queries in three dimensions.",
    "Generate a Delaunay-free structured triangular mesh of a rectangle and compute the area of each triangle.",
    "Compute the Morton (Z-order) index of 3D grid coordinates.",
    "Write a routine that reads a matrix from a text file, normalises each row, and writes it back.",
    "Benchmark three ways of summing a million numbers and report the elapsed time of each.",
    "Implement a fixed-size ring buffer for streaming sensor data.",
    "Write a function that checks whether a matrix is symmetric within a tolerance.",
    "Compute the Chebyshev nodes on an interval and interpolate a function at them.",
)


CODE_REQUEST = "Reply with the code only."


def variant(prompt: str, language: str | None, style: int = 0, *, code_request: bool = True) -> str:
    """The prompt, asking for ``language`` (one of ``LANGUAGES``; None = the default prompt, no language named),
    followed by ``CODE_REQUEST`` unless ``code_request`` is False."""
    tail = f" {CODE_REQUEST}" if code_request else ""
    if language is None:
        return prompt + tail
    if language not in DISPLAY:
        raise ValueError(f"unknown language {language!r}; use one of {LANGUAGES}")
    return f"{prompt} {_SUFFIXES[style % len(_SUFFIXES)].format(lang=DISPLAY[language])}{tail}"


def defaults(prompts: list[str]) -> list[str]:
    """The default (no language named) variant of each prompt."""
    return [variant(p, None) for p in prompts]


def variants(prompts: list[str], language: str, *, seed: int = 0) -> list[str]:
    """One variant per prompt, the wording of the language request drawn at random (reproducibly)."""
    rng = random.Random(seed)
    return [variant(p, language, rng.randrange(len(_SUFFIXES))) for p in prompts]


def splits(seed: int = 0, fractions: tuple[float, float, float] = (0.6, 0.15, 0.25)) -> tuple[list[str], ...]:
    """Disjoint (train, validation, test) prompt lists."""
    return split(list(PROMPTS), fractions, seed=seed)
