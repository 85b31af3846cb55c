"""What the tuning tests share: the injected changes of the standard 30,000-event stream."""

#: One change of each kind (tests/unit/test_tuning.py asserts where each is found).
SPECS = (
    "model=fraud,feature=amount,kind=mean,shift=1sd,at=0.5",
    "model=fraud,feature=channel,kind=categorical,shift=20,at=20000",
    "model=fraud,feature=score,kind=missing,to=0.3,at=0.8,ramp=1000",
    "model=fraud,feature=latency,kind=scale,factor=3,at=0.4",
    "model=fraud,kind=prediction,shift=1sd,at=0.2",
)
