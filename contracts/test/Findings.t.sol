// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";
import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {ClearingHouse} from "../src/ClearingHouse.sol";
import {EscapeHatch} from "../src/EscapeHatch.sol";
import {HxTimelock} from "../src/governance/HxTimelock.sol";
import {SumTree} from "../src/libraries/SumTree.sol";
import {ExpiringPause} from "../src/utils/ExpiringPause.sol";
import {HxBase} from "./helpers/HxBase.sol";
import {TreeBuilder} from "./helpers/TreeBuilder.sol";

/// @notice A token whose issuer can take tokens from any holder (a seizure, a negative rebase, a fee switch).
contract SeizableToken is ERC20 {
    constructor() ERC20("Seizable", "SZ") {}

    function mint(address to, uint256 a) external {
        _mint(to, a);
    }

    function seize(address from, uint256 a) external {
        _burn(from, a);
    }
}

/// @notice A token that calls its registered receiver on every transfer to it (ERC-777-style hook).
contract HookToken is ERC20 {
    address public hooked;

    constructor() ERC20("Hook", "HK") {}

    function mint(address to, uint256 a) external {
        _mint(to, a);
    }

    function setHooked(address h) external {
        hooked = h;
    }

    function _update(address from, address to, uint256 v) internal override {
        super._update(from, to, v);
        if (to == hooked && from != address(0)) FreezeOnReceive(to).onReceive();
    }
}

/// @notice Tries to freeze the exchange from inside a token transfer it receives.
contract FreezeOnReceive {
    ClearingHouse internal immutable ch;
    bool public innerFreezeSucceeded;
    bytes public innerError;

    constructor(ClearingHouse c) {
        ch = c;
    }

    function onReceive() external {
        try ch.freeze(ch.lastBatchId()) {
            innerFreezeSucceeded = true;
        } catch (bytes memory err) {
            innerError = err;
        }
    }
}

/// @notice One test (or more) per finding of issue #15. Each was first written against the v1 contracts (same
///         scenario, v1 API) and failed there; the v1 run is quoted in the commit that added this file.
contract FindingsTest is HxBase {
    using TreeBuilder for TreeBuilder.Tree;

    address internal thief = makeAddr("thief");
    uint256 internal thiefKey;

    function setUp() public override {
        super.setUp();
        (thief, thiefKey) = makeAddrAndKey("thief");
        keyOf[thief] = thiefKey;
    }

    /// alice 10,000 USDC, bob 5 WETH, credited by batch 1, which is final after the window.
    function _seed() internal {
        _deposit(alice, address(usdc), 10_000e6);
        _deposit(bob, address(weth), 5e18);
        _submit();
    }

    function _expectRejected(ClearingHouse.Batch memory b, bytes memory err) internal {
        bytes32 before = _digest();
        vm.expectRevert(err);
        vm.prank(operator);
        ch.submitBatch(b);
        assertEq(_digest(), before, "state unchanged");
    }

    // ------------------------------------------------------------------ finding 1 (critical)

    /// Finding 1: a stolen operator key cannot pay an account's balance anywhere the account did not sign for.
    /// v1: the batch paid alice's 10,000 USDC to the thief ("operator paid alice's money to itself").
    function test_F1_operatorCannotWithdrawWithoutTheAccountsSignature() public {
        _seed();
        bal[address(usdc)][alice] = 0; // the thief's tree takes alice's balance ...
        ClearingHouse.Batch memory b = _batch();
        b.withdrawals = new ClearingHouse.SignedWithdrawal[](1);

        // (a) a withdrawal of alice's, to the thief, signed with a key that is not alice's
        b.withdrawals[0] = ClearingHouse.SignedWithdrawal(
            alice, address(usdc), 10_000e6, thief, 0, block.timestamp + 1 days, ""
        );
        b.withdrawals[0].signature = _sign(
            thiefKey, ch.withdrawalDigest(alice, address(usdc), 10_000e6, thief, 0, block.timestamp + 1 days)
        );
        _expectRejected(b, abi.encodeWithSelector(ClearingHouse.InvalidSignature.selector, alice, 0));

        // (b) alice's real signature for a withdrawal to herself, redirected to the thief
        ClearingHouse.SignedWithdrawal memory real = _signed(alice, address(usdc), 10_000e6, alice);
        b.withdrawals[0] = real;
        b.withdrawals[0].destination = thief;
        _expectRejected(b, abi.encodeWithSelector(ClearingHouse.InvalidSignature.selector, alice, real.nonce));

        // (c) the amount inflated
        b.withdrawals[0] = real;
        b.withdrawals[0].amount = 20_000e6;
        _expectRejected(b, abi.encodeWithSelector(ClearingHouse.InvalidSignature.selector, alice, real.nonce));

        // (d) the honest withdrawal goes through once; its replay is refused
        bal[address(usdc)][alice] = 10_000e6;
        _withdraw(alice, address(usdc), 1000e6);
        ClearingHouse.Batch memory ok = _batch();
        _submit(ok);
        ClearingHouse.Batch memory replay = _batch();
        replay.withdrawals = ok.withdrawals;
        bal[address(usdc)][alice] -= 1000e6;
        replay.assets = _assets();
        _expectRejected(
            replay,
            abi.encodeWithSelector(ClearingHouse.NonceAlreadyUsed.selector, alice, ok.withdrawals[0].nonce)
        );
        _payOut();
        assertEq(usdc.balanceOf(thief), 0);
        assertEq(usdc.balanceOf(alice), 1000e6);
    }

    /// Finding 1: moving an account's balance into a leaf of the thief's and withdrawing it with the thief's own
    /// signature passes the solvency check, but the payout waits out the dispute window, in which a watcher voids
    /// the batch. v1 paid the thief inside the batch.
    function test_F1_reassignedBalanceWithdrawn_watcherVoidsItBeforePayout() public {
        _seed();
        actors.push(thief);
        bal[address(usdc)][alice] = 0;
        bal[address(usdc)][thief] = 10_000e6;
        _withdraw(thief, address(usdc), 10_000e6);
        _submit(); // accepted: claims - liabilities == holdings, the signature is the thief's own
        ClearingHouse.Payout[] memory p = _payoutsOf(2);
        vm.expectRevert(
            abi.encodeWithSelector(ClearingHouse.BatchNotFinal.selector, 2, block.timestamp + DISPUTE_WINDOW)
        );
        ch.executePayouts(2, p, 1);

        vm.warp(block.timestamp + 1 hours);
        _challenge(watcher, 2); // the watcher's rebuilt root differs from the one posted
        vm.warp(block.timestamp + DISPUTE_WINDOW);
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.BatchNotCanonical.selector, 2));
        ch.executePayouts(2, p, 1);
        assertEq(usdc.balanceOf(thief), 0, "nothing left the vault");
        assertEq(ch.lastBatchId(), 1);
        assertEq(ch.accountHoldings(address(usdc)), 10_000e6);

        // the honest operator continues from batch 1; alice still owns her balance
        bal[address(usdc)][thief] = 0;
        bal[address(usdc)][alice] = 10_000e6;
        _submit();
        _freeze();
        assertEq(_escape(alice)[0], 10_000e6);
    }

    /// Finding 1: a balance moved to the thief's leaf cannot be escaped with: the batch is voided inside its window
    /// and the escape batch is the last good one. v1: "thief escaped alice's balance".
    function test_F1_reassignedLeafCannotBeEscaped() public {
        _seed();
        vm.warp(block.timestamp + DISPUTE_WINDOW);
        actors.push(thief);
        bal[address(usdc)][alice] = 0;
        bal[address(usdc)][thief] = 10_000e6;
        _submit(); // then the thief stops posting, hoping for a freeze
        vm.warp(block.timestamp + 10 minutes);
        _challenge(watcher, 2);
        actors.pop(); // the model back to batch 1's state, which never had the thief
        bal[address(usdc)][thief] = 0;
        bal[address(usdc)][alice] = 10_000e6;
        _freeze();
        assertEq(ch.escapeBatchId(), 1);
        // the thief presents alice's leaf and proof as its own
        (EscapeHatch.LeafProof[] memory c, EscapeHatch.LeafProof[] memory l) = _proofs(alice);
        ClearingHouse.AssetState[] memory a = _assets();
        vm.expectRevert(abi.encodeWithSelector(EscapeHatch.InvalidProof.selector, 0, SumTree.CLAIM));
        vm.prank(thief);
        hatch.escape(a, c, l, thief);
        assertEq(_escape(alice)[0], 10_000e6);
        assertEq(usdc.balanceOf(thief), 0);
    }

    /// Finding 1, when every watcher and the guardian sleep through the window: the thief's payout is final, and
    /// the outflow cap bounds what leaves per period (governance set the cap to 2,500 USDC a day here). A payout
    /// above the whole cap is paid in parts (audit A-2; a thief could split it into withdrawals within the cap
    /// anyway): the cap's 2,500 a period, and nothing more until the next period, time for governance to act.
    function test_F1_watchersAsleep_outflowCapBoundsTheLoss() public {
        _governance(address(ch), abi.encodeCall(ClearingHouse.setOutflowCap, (address(usdc), 2500e6)));
        _seed();
        actors.push(thief);
        bal[address(usdc)][alice] = 0;
        bal[address(usdc)][thief] = 10_000e6;
        _withdraw(thief, address(usdc), 10_000e6);
        _submit();
        vm.warp(block.timestamp + DISPUTE_WINDOW);
        ClearingHouse.Payout[] memory p = _payoutsOf(2);
        ch.executePayouts(2, p, 1);
        assertEq(usdc.balanceOf(thief), 2500e6);
        vm.expectRevert(
            abi.encodeWithSelector(ClearingHouse.OutflowCapExceeded.selector, address(usdc), 7500e6, 0)
        );
        ch.executePayouts(2, p, 1);
        assertEq(usdc.balanceOf(thief), 2500e6);
    }

    // ------------------------------------------------------------------ finding 2 (high)

    /// Finding 2: a root nobody can open is voided in its window, and the escape falls back to the last good root.
    /// v1: after the freeze alice could prove nothing ("alice cannot exit").
    function test_F2_unopenableRootVoided_escapeUsesLastGoodRoot() public {
        _seed();
        vm.warp(block.timestamp + DISPUTE_WINDOW);
        ClearingHouse.Batch memory b = _batch();
        b.assets[0].claimsRoot = keccak256("nobody knows the leaves"); // right totals, no leaves behind it
        _submit(b);
        _challenge(watcher, 2); // its published data does not rebuild to that root
        _freeze();
        assertEq(_escape(alice)[0], 10_000e6);
        assertEq(_escape(bob)[1], 5e18);
    }

    /// Finding 2: a freeze while a batch is inside its window exits against the batch before it; naming the young
    /// one (a proof against a root still inside its challenge window) is refused.
    function test_F2_escapeUsesLastFinalRoot_neverOneInsideItsWindow() public {
        _seed();
        vm.prank(alice);
        uint256 rid = hatch.requestForcedWithdrawal(address(usdc), 1e6, alice); // the operator will ignore it
        vm.warp(block.timestamp + FORCED_PERIOD);
        _submit(); // batch 2, final only in DISPUTE_WINDOW
        ClearingHouse.Batch memory b = _batch();
        b.assets[0].claimsRoot = keccak256("unopenable");
        _submit(b); // batch 3, unopenable, not yet final
        uint256 finalAt = block.timestamp + DISPUTE_WINDOW;
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.EscapeBatchNotFinal.selector, 3, finalAt));
        hatch.freezeForUnservedRequest(rid, 3);
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.EscapeBatchNotFinal.selector, 2, finalAt));
        hatch.freezeForUnservedRequest(rid, 2);
        hatch.freezeForUnservedRequest(rid, 1);
        assertEq(ch.escapeBatchId(), 1);
        assertEq(ch.lastBatchId(), 1, "batches 2 and 3 voided by the freeze");
        assertEq(_escape(alice)[0], 10_000e6);
    }

    // ------------------------------------------------------------------ finding 3 (medium)

    /// Finding 3: an operator posting empty batches cannot hold a deposit hostage: past the credit period its
    /// depositor takes it back, with no freeze. v1: "dave's deposit is held hostage" (reclaim needed a freeze).
    function test_F3_uncreditedDepositReclaimedAfterCreditPeriod() public {
        _seed();
        uint48 id = _depositUncredited(dave, address(usdc), 77e6);
        uint64 at = uint64(block.timestamp);
        for (uint256 i; i < 3; ++i) {
            vm.warp(block.timestamp + CREDIT_PERIOD / 2);
            _submit(); // credits nothing new
        }
        assertEq(ch.lastCreditedDepositId(), id - 1);
        vm.prank(dave);
        vault.reclaimDeposit(id, address(usdc), 77e6, at, dave);
        assertEq(usdc.balanceOf(dave), 77e6);
        assertFalse(ch.frozen());
        // and no later batch can credit it
        _credit(id); // the engine model skips the reclaimed deposit, as the chain does
        _submit();
        assertEq(ch.accountHoldings(address(usdc)), 10_000e6);
    }

    /// Finding 3: a withdrawal forced on chain that no batch serves lets anyone freeze; the account then exits.
    /// v1 had no forced withdrawals: empty batches kept the freeze away forever.
    function test_F3_unservedForcedWithdrawalLetsAnyoneFreeze() public {
        _seed();
        vm.prank(alice);
        uint256 rid = hatch.requestForcedWithdrawal(address(usdc), 10_000e6, alice);
        uint256 deadline = block.timestamp + FORCED_PERIOD;
        for (uint256 i; i < 3; ++i) {
            vm.warp(block.timestamp + 12 hours);
            _submit(); // the operator keeps posting, ignoring the request
        }
        vm.expectRevert(abi.encodeWithSelector(EscapeHatch.RequestNotOverdue.selector, rid, deadline));
        hatch.freezeForUnservedRequest(rid, 4);
        vm.warp(deadline);
        vm.prank(carol); // anyone
        hatch.freezeForUnservedRequest(rid, 4);
        assertTrue(ch.frozen());
        assertEq(_escape(alice)[0], 10_000e6);
    }

    // ------------------------------------------------------------------ finding 4 (medium)

    /// Finding 4: a guardian pause expires on its own, long before the freeze period: the operator resumes and
    /// nobody can freeze. v1: "batches still blocked after a day; freeze comes at 3 days".
    function test_F4_pauseExpires_operatorResumesBeforeAnyoneCanFreeze() public {
        _seed();
        vm.prank(guardian);
        ch.pause();
        ClearingHouse.Batch memory b = _batch();
        vm.expectRevert(
            abi.encodeWithSelector(ExpiringPause.EnforcedPause.selector, block.timestamp + MAX_PAUSE)
        );
        vm.prank(operator);
        ch.submitBatch(b);
        vm.warp(block.timestamp + MAX_PAUSE);
        _submit();
        assertEq(ch.lastBatchId(), 2);
        vm.expectRevert(
            abi.encodeWithSelector(ClearingHouse.NotStale.selector, block.timestamp + FREEZE_PERIOD)
        );
        ch.freeze(1);
    }

    /// Finding 4: the guardian lifts its own pause; it cannot chain pauses back to back.
    /// v1: "only a 7-day timelock operation lifts the pause".
    function test_F4_guardianLiftsPause_andCannotChainPauses() public {
        vm.startPrank(guardian);
        ch.pause();
        ch.unpause();
        assertFalse(ch.paused());
        vm.expectRevert(
            abi.encodeWithSelector(ExpiringPause.PauseCooldown.selector, block.timestamp + MAX_PAUSE)
        );
        ch.pause();
        vm.stopPrank();
    }

    // ------------------------------------------------------------------ finding 5 (low, info)

    /// Finding 5: freeze() re-entered from a token callback is refused, not silently undone.
    /// v1: "freeze succeeded inside the batch (then undone)".
    function test_F5_freezeNotReenterableFromTokenCallback() public {
        HookToken hook = new HookToken();
        address[] memory listed = new address[](1);
        listed[0] = address(hook);
        _deploy(listed);
        FreezeOnReceive r = new FreezeOnReceive(ch);
        actors.push(address(r));
        hook.mint(alice, 100);
        vm.startPrank(alice);
        hook.approve(address(vault), 100);
        vault.deposit(address(hook), 100, alice);
        vm.stopPrank();
        deps.push(Dep(1, alice, address(hook), 100, uint64(block.timestamp)));
        _credit(1);
        hook.setHooked(address(r));
        _withdrawTo(alice, address(hook), 100, address(r));
        _submit();
        vm.warp(block.timestamp + FREEZE_PERIOD); // stale: a freeze is legitimate now, but not from inside a call
        ch.executePayouts(1, _payoutsOf(1), 1);
        assertFalse(r.innerFreezeSucceeded(), "freeze ran inside executePayouts");
        assertEq(
            r.innerError(),
            abi.encodeWithSelector(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector)
        );
        assertFalse(ch.frozen());
        ch.freeze(1);
        assertTrue(ch.frozen());
    }

    function _withdrawTo(address who, address token, uint256 amount, address to) internal {
        bal[token][who] -= amount;
        pendingW.push(_signed(who, token, amount, to));
    }

    /// Finding 5: solvency is also checked against the tokens the vault really holds. v1: "batch accepted though
    /// the vault is short".
    function test_F5_vaultShortOfTokensRejectsBatches() public {
        SeizableToken s = new SeizableToken();
        address[] memory listed = new address[](1);
        listed[0] = address(s);
        _deploy(listed);
        s.mint(alice, 100);
        vm.startPrank(alice);
        s.approve(address(vault), 100);
        vault.deposit(address(s), 100, alice);
        vm.stopPrank();
        deps.push(Dep(1, alice, address(s), 100, uint64(block.timestamp)));
        _credit(1);
        _submit();
        s.seize(address(vault), 40);
        _expectRejected(
            _batch(), abi.encodeWithSelector(ClearingHouse.VaultBalanceShort.selector, address(s), 60, 100)
        );
    }

    /// Finding 5: the timelock's delay cannot go below its floor (> freeze and forced-withdrawal periods).
    /// v1: "delay lowered below the freeze period".
    function test_F5_timelockDelayHasAFloor() public {
        bytes memory data = abi.encodeCall(TimelockController.updateDelay, (1 hours));
        vm.prank(governor);
        timelock.schedule(address(timelock), 0, data, bytes32(0), bytes32(0), TIMELOCK_DELAY);
        vm.warp(block.timestamp + TIMELOCK_DELAY);
        vm.expectRevert(abi.encodeWithSelector(HxTimelock.DelayBelowFloor.selector, 1 hours, DELAY_FLOOR));
        vm.prank(governor);
        timelock.execute(address(timelock), 0, data, bytes32(0), bytes32(0));
        assertEq(timelock.getMinDelay(), TIMELOCK_DELAY);
        assertGt(timelock.delayFloor(), FREEZE_PERIOD);
    }

    /// Info: ready timelock operations expire. v1: "a year-old operation still executes".
    function test_F5_queuedOperationsExpire() public {
        bytes memory data = abi.encodeCall(ClearingHouse.setOutflowCap, (address(usdc), 1));
        vm.prank(governor);
        timelock.schedule(address(ch), 0, data, bytes32(0), bytes32(0), TIMELOCK_DELAY);
        uint256 readyAt = block.timestamp + TIMELOCK_DELAY;
        vm.warp(readyAt + timelock.GRACE_PERIOD() + 1);
        bytes32 id = timelock.hashOperation(address(ch), 0, data, bytes32(0), bytes32(0));
        vm.expectRevert(
            abi.encodeWithSelector(
                HxTimelock.OperationExpired.selector, id, readyAt + timelock.GRACE_PERIOD()
            )
        );
        vm.prank(governor);
        timelock.execute(address(ch), 0, data, bytes32(0), bytes32(0));
        assertEq(ch.outflowCap(address(usdc)), BIG_CAP);
    }

    /// Finding 5: a batch credits the deposits behind the ids it names. After a deep reorg deposit 1 is bob's, not
    /// the alice deposit the engine saw: the running deposit hash differs and the batch is refused.
    /// v1: "bob's deposit credited to alice".
    function test_F5_reorgedDepositNeverCreditedToTheWrongAccount() public {
        _depositUncredited(bob, address(usdc), 100e6); // what the chain holds after the reorg
        deps[0].account = alice; // what the engine saw before it
        _credit(1);
        _expectRejected(
            _batch(), abi.encodeWithSelector(ClearingHouse.DepositAccumulatorMismatch.selector, 1)
        );
    }

    /// Info: a leaf above 2^128 is withdrawn and escaped like any other (uint256 throughout).
    /// v1: "a leaf above 2^128 cannot be withdrawn" (SafeCast to uint128).
    function test_F5_leafAbove2to128_withdrawnAndEscaped() public {
        uint256 big = (uint256(1) << 128) + 1;
        _deposit(alice, address(weth), 3 * big);
        _submit();
        _withdraw(alice, address(weth), big);
        _submit();
        _payOut();
        assertEq(weth.balanceOf(alice), big);
        _freeze();
        assertEq(_escape(alice)[1], 2 * big);
    }
}
