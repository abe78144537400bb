"""Count the primes below a limit. Correct, and deliberately slow: make it fast."""


def count_primes(limit: int) -> int:
    count = 0
    for n in range(2, limit):
        if all(n % d for d in range(2, n)):
            count += 1
    return count
