"""A reward of one's own: shorter responses score higher. Use it beside another reward:

    p2o rollout ... --reward choice --reward examples/rewards/brevity.py:brevity --reward-weights 1,0.1
"""


def brevity(responses, problems):
    """1 for a response of at most 200 characters, falling linearly to 0 at 2,000."""
    return [min(1.0, max(0.0, (2000 - len(response)) / 1800)) for response in responses]
