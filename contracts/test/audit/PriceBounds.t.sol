// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {Vm} from "forge-std/Vm.sol";

import {ClearingHouse} from "../../src/ClearingHouse.sol";
import {PriceBounds} from "../../src/PriceBounds.sol";
import {AggregatorV3Interface} from "../../src/oracle/AggregatorV3Interface.sol";
import {HxPriceAggregator} from "../../src/oracle/HxPriceAggregator.sol";
import {TestToken} from "../../src/test-tokens/TestToken.sol";
import {HxBase} from "../helpers/HxBase.sol";

/// @notice A feed that can be stale, dead (answer <= 0), from the future, reverting, short of return data, or
///         burning all its gas.
contract MockFeed {
    uint8 public decimals;
    int256 public answer;
    uint256 public updatedAt;
    uint8 public mode; // 0 answers, 1 reverts, 2 returns 32 bytes, 3 burns all gas

    constructor(uint8 decimals_) {
        decimals = decimals_;
    }

    function set(int256 answer_, uint256 updatedAt_) external {
        answer = answer_;
        updatedAt = updatedAt_;
    }

    function setMode(uint8 mode_) external {
        mode = mode_;
    }

    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80) {
        if (mode == 1) revert("feed down");
        if (mode == 2) {
            assembly {
                mstore(0, 1)
                return(0, 32)
            }
        }
        if (mode == 3) {
            assembly {
                invalid()
            }
        }
        return (1, answer, updatedAt, updatedAt, 1);
    }
}

/// @notice Audit A-1 (fixed): the price feeds that bound committed prices (`PriceBounds`, set by governance through
///         `ClearingHouse.setPriceFeed`). Rules in `src/PriceBounds.sol`.
contract PriceBoundsTest is HxBase {
    uint32 internal constant DEV = 20_000; // 2%
    uint32 internal constant AGE = 1 hours;

    HxPriceAggregator internal wethFeed; // 8 decimals, as Chainlink's USD feeds
    HxPriceAggregator internal wbtcFeed; // 18 decimals
    PriceBounds internal bounds;

    function setUp() public override {
        super.setUp();
        bounds = ch.priceBounds();
        wethFeed = new HxPriceAggregator(8, "ETH / USD", address(this));
        wbtcFeed = new HxPriceAggregator(18, "BTC / USD", address(this));
        _governance(
            address(ch), abi.encodeCall(ch.setPriceFeed, (address(weth), address(wethFeed), DEV, AGE))
        );
        _governance(
            address(ch), abi.encodeCall(ch.setPriceFeed, (address(wbtc), address(wbtcFeed), DEV, AGE))
        );
        wethFeed.submit(3000e8);
        wbtcFeed.submit(60_000e18);
        _deposit(alice, address(usdc), 10_000e6);
        _deposit(bob, address(weth), 1e18);
        _submit(); // batch 1 at the honest prices: 3000e6, 60_000e6
    }

    function _asTimelock(address token, address feed, uint32 dev, uint32 age) internal {
        vm.prank(address(timelock));
        ch.setPriceFeed(token, feed, dev, age);
    }

    // ------------------------------------------------------------------ fresh feed: the deviation bound

    /// 2% around 3000 USD (8 decimals): 2940e6 and 3060e6 are accepted (inclusive), one micro beyond is refused.
    function test_A1_freshFeed_boundIsInclusive_8decimals() public {
        priceOf[address(weth)] = 3060e6 + 1;
        _submitReverts(
            abi.encodeWithSelector(
                ClearingHouse.PriceDeviatesFromFeed.selector, address(weth), 3060e6 + 1, 3000e6
            )
        );
        priceOf[address(weth)] = 2940e6 - 1;
        _submitReverts(
            abi.encodeWithSelector(
                ClearingHouse.PriceDeviatesFromFeed.selector, address(weth), 2940e6 - 1, 3000e6
            )
        );
        priceOf[address(weth)] = 3060e6;
        _submit();
        priceOf[address(weth)] = 2940e6;
        _submit();
        assertEq(bounds.committedPrice(address(weth)), 2940e6);
        assertEq(bounds.feedPrice(address(weth)), 3000e6);
        assertEq(bounds.feedPrice(address(wbtc)), 60_000e6);
    }

    /// Fuzz: p is accepted iff ceil(a(1e6 - d) / 10^fd) <= p <= floor(a(1e6 + d) / 10^fd) (exact, no rounding of the
    /// feed price), feed decimals 8.
    function testFuzz_A1_deviationBoundary_8decimals(uint256 answer, uint32 dev) public {
        _boundary(wethFeed, address(weth), 8, answer, dev);
    }

    /// The same with feed decimals 18 (the feed price is then not a whole number of micro-USDC).
    function testFuzz_A1_deviationBoundary_18decimals(uint256 answer, uint32 dev) public {
        _boundary(wbtcFeed, address(wbtc), 18, answer, dev);
    }

    function _boundary(HxPriceAggregator feed, address token, uint8 fd, uint256 answer, uint32 dev) internal {
        uint256 unit = 10 ** fd;
        // feed price between 1 micro-USDC and 1e29 micro-USDC per whole token
        answer = bound(answer, unit / 1e6, 1e23 * unit);
        dev = uint32(bound(dev, 1, bounds.MAX_DEVIATION_PPM()));
        _asTimelock(token, address(feed), dev, AGE);
        feed.submit(int256(answer));
        uint256 hi = answer * (1e6 + dev) / unit;
        uint256 lo = (answer * (1e6 - dev) + unit - 1) / unit;
        uint256 fp = answer * 1e6 / unit;

        priceOf[token] = hi + 1;
        _submitReverts(
            abi.encodeWithSelector(ClearingHouse.PriceDeviatesFromFeed.selector, token, hi + 1, fp)
        );
        if (lo > 1) {
            priceOf[token] = lo - 1;
            _submitReverts(
                abi.encodeWithSelector(ClearingHouse.PriceDeviatesFromFeed.selector, token, lo - 1, fp)
            );
        }
        if (lo <= hi) {
            priceOf[token] = hi;
            _submit();
            priceOf[token] = lo == 0 ? 1 : lo;
            _submit();
            assertEq(bounds.committedPrice(token), priceOf[token]);
        }
    }

    // ------------------------------------------------------------------ the numeraire

    /// USDC (listed token 0) is pinned at 10^6 micro-USDC per USDC, the price the engine always commits.
    function test_A1_numerairePinned() public {
        priceOf[address(usdc)] = 1e6 - 1;
        _submitReverts(
            abi.encodeWithSelector(ClearingHouse.NumerairePriceNotPinned.selector, address(usdc), 1e6 - 1)
        );
        priceOf[address(usdc)] = 1;
        _submitReverts(
            abi.encodeWithSelector(ClearingHouse.NumerairePriceNotPinned.selector, address(usdc), 1)
        );
        priceOf[address(usdc)] = 1e6;
        _submit();
    }

    // ------------------------------------------------------------------ feed not usable: the price may not change

    /// Stale (older than maxAge): the last committed price is accepted unchanged, any other price is refused; a fresh
    /// answer lifts it.
    function test_A1_staleFeed_unchangedPriceAccepted_changedRefused() public {
        vm.warp(block.timestamp + AGE); // exactly maxAge old: still fresh
        priceOf[address(weth)] = 3050e6;
        _submit();
        vm.warp(block.timestamp + 1); // maxAge + 1: stale
        priceOf[address(weth)] = 3051e6;
        _submitReverts(
            abi.encodeWithSelector(ClearingHouse.PriceFeedUnavailable.selector, address(weth), 3051e6, 3050e6)
        );
        priceOf[address(weth)] = 3000e6; // even the feed's own stale answer: not the last committed price
        _submitReverts(
            abi.encodeWithSelector(ClearingHouse.PriceFeedUnavailable.selector, address(weth), 3000e6, 3050e6)
        );
        priceOf[address(weth)] = 3050e6;
        _submit(); // settlement goes on at the old price
        assertEq(bounds.feedPrice(address(weth)), 0, "not usable");
        wethFeed.submit(3100e8);
        priceOf[address(weth)] = 3100e6;
        _submit();
    }

    /// Dead (answer <= 0), from the future, reverting, short of return data, burning its gas, or no code at all: none
    /// bricks a batch at the old prices, each refuses a changed price.
    function test_A1_brokenFeeds_neverBrickBatchesAtTheOldPrice() public {
        MockFeed m = new MockFeed(8);
        _asTimelock(address(weth), address(m), DEV, AGE);
        m.set(3000e8, block.timestamp);
        priceOf[address(weth)] = 3001e6;
        _submit(); // usable mock: a move inside the band

        for (uint256 k; k < 7; ++k) {
            if (k == 0) m.set(0, block.timestamp);
            if (k == 1) m.set(-1, block.timestamp);
            if (k == 2) m.set(3000e8, block.timestamp + 1);
            if (k == 3) m.setMode(1);
            if (k == 4) m.setMode(2);
            if (k == 5) m.setMode(3);
            if (k == 6) _asTimelock(address(weth), makeAddr("no code"), DEV, AGE);
            priceOf[address(weth)] = 3002e6;
            _submitReverts(
                abi.encodeWithSelector(
                    ClearingHouse.PriceFeedUnavailable.selector, address(weth), 3002e6, 3001e6
                )
            );
            priceOf[address(weth)] = 3001e6;
            _submit();
        }
        // HxPriceAggregator before its first round reverts ("No data present"): not usable either
        HxPriceAggregator empty = new HxPriceAggregator(8, "empty", address(this));
        _asTimelock(address(weth), address(empty), DEV, AGE);
        _submit();
    }

    /// A feed worth more than MAX_PRICE, or with more than 36 decimals, counts as not usable (never an overflow).
    function test_A1_absurdFeed_notUsable() public {
        MockFeed m = new MockFeed(8);
        _asTimelock(address(wbtc), address(m), DEV, AGE);
        m.set(type(int256).max, block.timestamp);
        _submit();
        MockFeed m37 = new MockFeed(37);
        m37.set(60_000e37, block.timestamp);
        _asTimelock(address(wbtc), address(m37), DEV, AGE);
        priceOf[address(wbtc)] = 60_001e6;
        _submitReverts(
            abi.encodeWithSelector(
                ClearingHouse.PriceFeedUnavailable.selector, address(wbtc), 60_001e6, 60_000e6
            )
        );
    }

    /// A token listed with a feed that is dead before any batch priced it has no last price: every price is refused
    /// until the feed answers (or governance removes it). Governance sets a feed once the feed is live.
    function test_A1_newTokenWithDeadFeed_refusedUntilTheFeedAnswers() public {
        HxPriceAggregator extraFeed = new HxPriceAggregator(8, "X / USD", address(this));
        address extra = address(new TestToken("Extra (test)", "X", 18));
        _governance(address(ch), abi.encodeCall(ch.listToken, (extra, BIG_CAP)));
        _asTimelock(extra, address(extraFeed), DEV, AGE);
        wethFeed.submit(3000e8); // the other feeds answer again after the timelock's week
        wbtcFeed.submit(60_000e18);
        priceOf[extra] = 5e6;
        _submitReverts(abi.encodeWithSelector(ClearingHouse.PriceFeedUnavailable.selector, extra, 5e6, 0));
        extraFeed.submit(5e8);
        _submit();
        assertEq(bounds.committedPrice(extra), 5e6);
    }

    // ------------------------------------------------------------------ governance only, bounds

    /// Only governance (the timelock, DEFAULT_ADMIN_ROLE) sets or removes a feed; the operator, the guardian, a
    /// watcher and anyone else are refused, and PriceBounds itself takes calls from the ClearingHouse only.
    function test_A1_onlyGovernanceSetsAFeed() public {
        address[4] memory who = [operator, guardian, watcher, makeAddr("random")];
        for (uint256 i; i < who.length; ++i) {
            vm.expectRevert(
                abi.encodeWithSelector(
                    IAccessControl.AccessControlUnauthorizedAccount.selector, who[i], bytes32(0)
                )
            );
            vm.prank(who[i]);
            ch.setPriceFeed(address(wbtc), address(0), 0, 0);
        }
        address[3] memory direct = [operator, address(timelock), makeAddr("random")];
        for (uint256 i; i < direct.length; ++i) {
            vm.expectRevert(abi.encodeWithSelector(PriceBounds.NotClearingHouse.selector, direct[i]));
            vm.prank(direct[i]);
            bounds.setPriceFeed(address(wbtc), address(0), 0, 0);
            vm.expectRevert(abi.encodeWithSelector(PriceBounds.NotClearingHouse.selector, direct[i]));
            vm.prank(direct[i]);
            bounds.commit(new address[](0), new uint256[](0));
        }
        (address f, uint32 d, uint32 a) = _feedOf(address(wbtc));
        assertEq(f, address(wbtcFeed), "feed unchanged");
        assertEq(d, DEV);
        assertEq(a, AGE);
    }

    /// Through the timelock: set (event, view), then remove (feed 0): the token's price is unchecked again.
    function test_A1_governanceRemovesAFeed_priceUncheckedAgain() public {
        vm.recordLogs();
        _governance(address(ch), abi.encodeCall(ch.setPriceFeed, (address(wbtc), address(0), 7, 9)));
        Vm.Log[] memory logs = vm.getRecordedLogs();
        uint256 seen;
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter == address(bounds) && logs[i].topics[0] == PriceBounds.PriceFeedSet.selector)
            {
                assertEq(logs[i].topics[1], bytes32(uint256(uint160(address(wbtc)))));
                assertEq(logs[i].data, abi.encode(address(0), uint32(0), uint32(0)));
                ++seen;
            }
        }
        assertEq(seen, 1, "PriceFeedSet emitted once");
        (address f, uint32 d, uint32 a) = _feedOf(address(wbtc));
        assertEq(f, address(0));
        assertEq(d + a, 0, "bounds cleared");
        wethFeed.submit(3000e8);
        priceOf[address(wbtc)] = 1e36;
        _submit();
        assertEq(bounds.committedPrice(address(wbtc)), 1e36);
    }

    /// Bounds: 0 < maxDeviationPpm <= 500,000, maxAgeSeconds > 0, a listed token, never the numeraire.
    function test_A1_feedParameterBoundsRefused() public {
        address f = address(wethFeed);
        uint32 maxDev = bounds.MAX_DEVIATION_PPM();
        uint32[2][3] memory bad = [[uint32(0), AGE], [maxDev + 1, AGE], [DEV, uint32(0)]];
        for (uint256 i; i < bad.length; ++i) {
            vm.expectRevert(
                abi.encodeWithSelector(
                    ClearingHouse.BadPriceFeed.selector, address(weth), bad[i][0], bad[i][1]
                )
            );
            _asTimelock(address(weth), f, bad[i][0], bad[i][1]);
        }
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.BadPriceFeed.selector, address(usdc), DEV, AGE));
        _asTimelock(address(usdc), f, DEV, AGE);
        address unlisted = makeAddr("unlisted");
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.TokenNotListed.selector, unlisted));
        _asTimelock(unlisted, f, DEV, AGE);
        _asTimelock(address(weth), f, maxDev, 1); // the extremes are accepted
        (, uint32 d, uint32 a) = _feedOf(address(weth));
        assertEq(d, maxDev);
        assertEq(a, 1);
    }

    function _feedOf(address token) internal view returns (address f, uint32 d, uint32 a) {
        AggregatorV3Interface feed;
        (feed, d, a) = bounds.priceFeed(token);
        f = address(feed);
    }

    // ------------------------------------------------------------------ gas

    /// What a feed costs per asset in submitBatch (logged; cold storage and feed, as a fresh transaction sees it).
    function test_A1_gas_feedPerAsset() public {
        uint256 snap = vm.snapshotState();
        _asTimelock(address(weth), address(0), 0, 0);
        _asTimelock(address(wbtc), address(0), 0, 0);
        uint256 without = _gasOfNextBatch();
        vm.revertToState(snap);
        uint256 with = _gasOfNextBatch();
        emit log_named_uint("submitBatch gas, 3 assets, no feed", without);
        emit log_named_uint("submitBatch gas, 3 assets, 2 with a feed (HxPriceAggregator)", with);
        emit log_named_uint("extra gas per asset with a feed", (with - without) / 2);
        assertGt(with, without);
    }

    function _gasOfNextBatch() internal returns (uint256 used) {
        ClearingHouse.Batch memory b = _batch();
        vm.cool(address(ch));
        vm.cool(address(bounds));
        vm.cool(address(wethFeed));
        vm.cool(address(wbtcFeed));
        vm.prank(operator);
        ch.submitBatch(b);
        used = vm.lastCallGas().gasTotalUsed;
    }
}
