// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";
import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {ClearingHouse} from "../../src/ClearingHouse.sol";
import {EscapeHatch} from "../../src/EscapeHatch.sol";
import {SumTreeVerifier} from "../../src/SumTreeVerifier.sol";
import {Vault} from "../../src/Vault.sol";
import {SumTree} from "../../src/libraries/SumTree.sol";
import {HxBase} from "../helpers/HxBase.sol";
import {TreeBuilder} from "../helpers/TreeBuilder.sol";

/// @notice A token that, once armed, deposits again from inside the vault's pull of the first deposit (an
///         ERC-777-style hook): the inner deposit would be counted in the outer one's balance delta.
contract ReenterToken is ERC20 {
    Vault internal _vault;
    bool internal _armed;

    constructor() ERC20("Reenter", "RE") {}

    function mint(address to, uint256 a) external {
        _mint(to, a);
    }

    function arm(Vault v) external {
        _vault = v;
        _armed = true;
        _mint(address(this), 1);
        _approve(address(this), address(v), 1);
    }

    function _update(address from, address to, uint256 v) internal override {
        super._update(from, to, v);
        if (_armed && from != address(0) && from != address(this) && to == address(_vault)) {
            _armed = false;
            _vault.deposit(address(this), 1, from);
        }
    }
}

/// @notice Audit of the contracts (branch audit-contracts): attacks that FAIL. Each test asserts the defence and
///         would fail if it were removed. The attacks that succeed are in AuditFindings.t.sol.
contract AuditDefencesTest is HxBase {
    using TreeBuilder for TreeBuilder.Tree;

    uint256 internal constant SECP256K1_N =
        0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;

    function _serveInFull(uint256 rid, uint256 amount) internal {
        ClearingHouse.ForcedServe storage s = pendingF.push();
        s.requestId = rid;
        s.amount = amount;
    }

    // ------------------------------------------------------------------ double withdrawal

    /// Depositor: a withdrawal queued by the escape batch and an escape of the same money. The escape state is after
    /// the withdrawal's debit; the payout pays once after the freeze; the account escapes once.
    function test_D_withdrawalInEscapeBatch_paidOnce_escapedOnce() public {
        _deposit(alice, address(usdc), 10_000e6);
        _submit();
        _withdraw(alice, address(usdc), 4000e6);
        _submit();
        ClearingHouse.Payout[] memory p = _payoutsOf(2);
        _freeze();
        assertEq(ch.escapeBatchId(), 2);
        ch.executePayouts(2, p, 10);
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.NothingToExecute.selector, 2));
        ch.executePayouts(2, p, 10);
        assertEq(_escape(alice)[0], 6000e6);
        (EscapeHatch.LeafProof[] memory c, EscapeHatch.LeafProof[] memory l) = _proofs(alice);
        ClearingHouse.AssetState[] memory a = _assets();
        vm.expectRevert(abi.encodeWithSelector(EscapeHatch.AlreadyEscaped.selector, alice));
        vm.prank(alice);
        hatch.escape(a, c, l, alice);
        assertEq(usdc.balanceOf(alice), 10_000e6);
        assertEq(usdc.balanceOf(address(vault)), 0);
    }

    /// Stolen operator key: a forced serve in a voided batch, served again by the resubmitted batch of the same id
    /// with a byte-identical payout list (same payouts hash). It pays once; no later batch serves it again; the
    /// account cannot cancel it to be served twice.
    function test_D_forcedServe_voidedAndResubmittedSameId_paysOnce() public {
        _deposit(alice, address(usdc), 10_000e6);
        _submit();
        vm.prank(alice);
        uint256 rid = hatch.requestForcedWithdrawal(address(usdc), 4000e6, alice);
        _serveInFull(rid, 4000e6);
        bal[address(usdc)][alice] -= 4000e6;
        _submit();
        ClearingHouse.Payout[] memory voided = _payoutsOf(2);
        _challenge(watcher, 2);
        _serveInFull(rid, 4000e6);
        _submit();
        ClearingHouse.Payout[] memory again = _payoutsOf(2);
        assertEq(keccak256(abi.encode(voided)), keccak256(abi.encode(again)), "identical payouts");
        vm.warp(block.timestamp + DISPUTE_WINDOW);
        ch.executePayouts(2, voided, 5);
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.NothingToExecute.selector, 2));
        ch.executePayouts(2, again, 5);
        _serveInFull(rid, 4000e6);
        _submitReverts(abi.encodeWithSelector(EscapeHatch.ForcedAlreadyServed.selector, rid));
        delete pendingF;
        vm.expectRevert(abi.encodeWithSelector(EscapeHatch.ForcedAlreadyServed.selector, rid));
        vm.prank(alice);
        hatch.cancelForcedWithdrawal(rid);
        assertTrue(hatch.isForcedRequestSettled(rid));
        assertEq(usdc.balanceOf(alice), 4000e6);
    }

    /// Front-runner / other chain: alice's signature replayed on a fork with another chain id, and its malleated
    /// twin (r, n - s, v ^ 1), are refused; the genuine one still works once.
    function test_D_signature_otherChainAndMalleated_refused() public {
        _deposit(alice, address(usdc), 1000e6);
        _submit();
        bal[address(usdc)][alice] = 0;
        ClearingHouse.SignedWithdrawal memory w = _signed(alice, address(usdc), 1000e6, alice);
        (uint8 v, bytes32 r, bytes32 s) =
            vm.sign(keyOf[alice], ch.withdrawalDigest(alice, address(usdc), 1000e6, alice, w.nonce, w.expiry));
        ClearingHouse.SignedWithdrawal memory m = ClearingHouse.SignedWithdrawal(
            alice,
            address(usdc),
            1000e6,
            alice,
            w.nonce,
            w.expiry,
            abi.encodePacked(r, bytes32(SECP256K1_N - uint256(s)), v == 27 ? uint8(28) : uint8(27))
        );
        pendingW.push(m);
        _submitReverts(abi.encodeWithSelector(ClearingHouse.InvalidSignature.selector, alice, w.nonce));
        delete pendingW;

        uint256 chainId = block.chainid;
        pendingW.push(w);
        vm.chainId(chainId + 1);
        _submitReverts(abi.encodeWithSelector(ClearingHouse.InvalidSignature.selector, alice, w.nonce));
        vm.chainId(chainId);
        _submit();
        _payOut();
        assertEq(usdc.balanceOf(alice), 1000e6);
    }

    // ------------------------------------------------------------------ sum trees

    /// Operator building trees: a giant claim hidden behind a sibling sum that wraps uint256, a node posed as a
    /// leaf, a liability leaf posed as a claim (and the reverse), and an index beyond the proof's depth.
    function test_D_sumTree_wrapNodeAsLeafKindSwapIndexAlias_refused() public {
        SumTreeVerifier v = new SumTreeVerifier();
        address t = address(usdc);
        // (1) wrap: 2^255 + (2^255 + 100) == 100 mod 2^256
        uint256 big = 1 << 255;
        uint256 sib = (1 << 255) + 100;
        bytes32 fakeRoot = SumTree.nodeHash(SumTree.leafHash(alice, t, big), big, bytes32(uint256(1)), sib);
        SumTree.Node[] memory p = new SumTree.Node[](1);
        p[0] = SumTree.Node(bytes32(uint256(1)), sib);
        assertFalse(v.verify(fakeRoot, 100, alice, t, big, 0, p), "wrapping sum");
        (,, bool ok) = v.computeRoot(alice, t, big, 0, p);
        assertFalse(ok);

        uint256[] memory amounts = new uint256[](4);
        amounts[0] = 7;
        amounts[1] = 11;
        amounts[2] = 13;
        amounts[3] = 17;
        TreeBuilder.Tree memory c = TreeBuilder.build(t, actors, amounts);
        TreeBuilder.Tree memory l = TreeBuilder.buildLiabilities(t, actors, amounts);
        assertTrue(v.verify(c.root(), c.total(), alice, t, 7, 0, c.proof(0)), "honest proof");
        // (2) alice claims the first pair's node (sum 18) as her leaf, one level up
        SumTree.Node[] memory up = new SumTree.Node[](1);
        up[0] = SumTree.Node(c.h[1][1], c.s[1][1]);
        assertFalse(v.verify(c.root(), c.total(), alice, t, 18, 0, up), "node as leaf");
        // (3) kinds never cross
        assertFalse(v.verify(l.root(), l.total(), alice, t, 7, 0, l.proof(0)), "liability as claim");
        assertFalse(v.verifyLiability(c.root(), c.total(), alice, t, 7, 0, c.proof(0)), "claim as liability");
        assertTrue(v.verifyLiability(l.root(), l.total(), alice, t, 7, 0, l.proof(0)));
        // (4) the same leaf at an aliased index (4 == 0 mod 2^depth)
        assertFalse(v.verify(c.root(), c.total(), alice, t, 7, 4, c.proof(0)), "index alias");
    }

    /// Stolen operator key: deny alice's forced request by "proving" her claim is 0 with another account's zero leaf
    /// (bob's index and proof).
    function test_D_forcedShortServe_withAnotherAccountsZeroLeaf_refused() public {
        _deposit(alice, address(usdc), 10_000e6);
        _submit();
        vm.prank(alice);
        uint256 rid = hatch.requestForcedWithdrawal(address(usdc), 1000e6, alice);
        uint256 bobLeaf = _indexOfActor(bob);
        ClearingHouse.ForcedServe storage s = pendingF.push();
        s.requestId = rid;
        s.leafIndex = bobLeaf;
        SumTree.Node[] memory p = _tree(address(usdc)).proof(bobLeaf);
        for (uint256 i; i < p.length; ++i) {
            s.proof.push(p[i]);
        }
        _submitReverts(abi.encodeWithSelector(ClearingHouse.ForcedShortServeUnproven.selector, rid));
        assertFalse(hatch.isForcedRequestSettled(rid));
    }

    /// Debtor in basket mode: hide its liability (prove 0 on its own path, or leave liabilities out).
    function test_D_basket_hiddenLiability_refused() public {
        _crossMargin();
        _freeze();
        (EscapeHatch.LeafProof[] memory c, EscapeHatch.LeafProof[] memory l) = _proofs(alice);
        ClearingHouse.AssetState[] memory a = _assets();
        l[0].amount = 0;
        vm.expectRevert(abi.encodeWithSelector(EscapeHatch.InvalidProof.selector, 0, SumTree.LIABILITY));
        vm.prank(alice);
        hatch.escape(a, c, l, alice);
        vm.expectRevert(EscapeHatch.ProofCountMismatch.selector);
        vm.prank(alice);
        hatch.escape(a, c, new EscapeHatch.LeafProof[](0), alice);
        uint256[] memory got = _escape(alice); // net 2,000 of a pool of 8,000: a quarter of each holding
        assertEq(got[0], 1250e6);
        assertEq(got[1], 0.25e18);
    }

    /// Rounding across valuation: whatever the prices and amounts, basket exits never pay more of a token than the
    /// holdings, and no account receives more value (at the committed prices) than its net.
    function testFuzz_D_basketExits_neverAboveHoldingsOrNet(uint256 wethAmt, uint256 debtAmt, uint256 pWeth)
        public
    {
        wethAmt = bound(wethAmt, 1, 1e24);
        pWeth = bound(pWeth, 1, 1e12);
        _deposit(alice, address(weth), wethAmt);
        _deposit(bob, address(usdc), 5000e6);
        _submit();
        uint256 maxDebt = Math.min(Math.mulDiv(wethAmt, pWeth, 1e18), 5000e6);
        debtAmt = bound(debtAmt, 1, Math.max(maxDebt, 1));
        priceOf[address(weth)] = pWeth;
        debt[address(usdc)][alice] = debtAmt;
        bal[address(usdc)][bob] += debtAmt;
        _submit();
        _freeze();
        uint256[] memory a = _escape(alice);
        uint256[] memory b = _escape(bob);
        assertLe(a[0] + b[0], 5000e6, "USDC exits within holdings");
        assertLe(a[1] + b[1], wethAmt, "WETH exits within holdings");
        uint256 aOwed = Math.mulDiv(wethAmt, pWeth * 1e18, 1e18);
        uint256 aOwes = Math.mulDiv(debtAmt, 1e6 * 1e18, 1e6, Math.Rounding.Ceil);
        uint256 aNet = aOwed > aOwes ? aOwed - aOwes : 0;
        uint256 bNet = Math.mulDiv(5000e6 + debtAmt, 1e6 * 1e18, 1e6);
        assertLe(_value(a, pWeth), aNet, "alice within her net");
        assertLe(_value(b, pWeth), bNet, "bob within his net");
    }

    function _value(uint256[] memory got, uint256 pWeth) internal pure returns (uint256) {
        return Math.mulDiv(got[0], 1e6 * 1e18, 1e6) + Math.mulDiv(got[1], pWeth * 1e18, 1e18);
    }

    // ------------------------------------------------------------------ deposits

    /// Depositor racing a freeze: a deposit credited by a batch the freeze voids is reclaimed once and is not in the
    /// escape state (it is the escape batch's leaf, without the deposit, that alice exits).
    function test_D_depositCreditedByVoidedBatch_reclaimedOnce_notEscaped() public {
        _deposit(alice, address(usdc), 1000e6);
        _submit();
        vm.prank(carol);
        uint256 rid = hatch.requestForcedWithdrawal(address(usdc), 1, carol); // the operator ignores it
        vm.warp(block.timestamp + FORCED_PERIOD - 1);
        uint48 id = _deposit(alice, address(usdc), 500e6);
        uint64 at = uint64(block.timestamp);
        _submit(); // batch 2 credits it, inside its window
        vm.warp(block.timestamp + 1);
        hatch.freezeForUnservedRequest(rid, 1);
        assertEq(ch.lastCreditedDepositId(), id - 1);
        bal[address(usdc)][alice] = 1000e6; // the model back to batch 1
        vm.prank(alice);
        vault.reclaimDeposit(id, address(usdc), 500e6, at, alice);
        vm.expectRevert(abi.encodeWithSelector(Vault.AlreadyReclaimed.selector, id));
        vm.prank(alice);
        vault.reclaimDeposit(id, address(usdc), 500e6, at, alice);
        assertEq(_escape(alice)[0], 1000e6);
        assertEq(usdc.balanceOf(alice), 1500e6);
        assertEq(usdc.balanceOf(address(vault)), 0);
    }

    /// Depositor front-running the batch that credits its overdue deposit: the batch is refused (the chain skips
    /// the reclaimed id, the books no longer match), the engine reverses the credit, and the deposit is never both
    /// reclaimed and credited.
    function test_D_reclaimFrontRunsCreditingBatch_neverBoth() public {
        _deposit(alice, address(usdc), 1000e6);
        _submit();
        uint48 id = _depositUncredited(bob, address(usdc), 300e6);
        uint64 at = uint64(block.timestamp);
        vm.warp(block.timestamp + CREDIT_PERIOD);
        _credit(id);
        ClearingHouse.Batch memory b = _batch();
        vm.prank(bob);
        vault.reclaimDeposit(id, address(usdc), 300e6, at, bob);
        vm.expectRevert(
            abi.encodeWithSelector(ClearingHouse.SolvencyMismatch.selector, address(usdc), 1300e6, 0, 1000e6)
        );
        vm.prank(operator);
        ch.submitBatch(b);
        bal[address(usdc)][bob] = 0;
        _submit();
        assertEq(ch.lastCreditedDepositId(), id);
        assertEq(ch.accountHoldings(address(usdc)), 1000e6);
        vm.expectRevert(abi.encodeWithSelector(Vault.DepositWasCredited.selector, id));
        vm.prank(bob);
        vault.reclaimDeposit(id, address(usdc), 300e6, at, bob);
        assertEq(usdc.balanceOf(bob), 300e6);
    }

    /// Malicious token hook: a deposit re-entered from the token's transfer (which would be counted twice in the
    /// balance delta) is refused as a whole.
    function test_D_depositReenteredFromTokenHook_refused() public {
        ReenterToken rt = new ReenterToken();
        address[] memory listed = new address[](1);
        listed[0] = address(rt);
        _deploy(listed);
        rt.mint(alice, 100);
        rt.arm(vault);
        vm.startPrank(alice);
        rt.approve(address(vault), 100);
        vm.expectRevert(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector);
        vault.deposit(address(rt), 100, alice);
        vm.stopPrank();
        assertEq(vault.depositCount(), 0);
        assertEq(vault.totalDeposited(address(rt)), 0);
    }

    // ------------------------------------------------------------------ governance

    /// Stolen governor / guardian keys: no schedule below the delay, no execution before it, and no direct call
    /// around the timelock.
    function test_D_timelock_noShortDelay_noEarlyExecution_noBypass() public {
        bytes memory data = abi.encodeCall(ClearingHouse.setOutflowCap, (address(usdc), 1));
        vm.expectRevert(
            abi.encodeWithSelector(
                TimelockController.TimelockInsufficientDelay.selector, 1 days, TIMELOCK_DELAY
            )
        );
        vm.prank(governor);
        timelock.schedule(address(ch), 0, data, bytes32(0), bytes32(0), 1 days);
        vm.prank(governor);
        timelock.schedule(address(ch), 0, data, bytes32(0), bytes32(0), TIMELOCK_DELAY);
        vm.warp(block.timestamp + TIMELOCK_DELAY - 1);
        bytes32 id = timelock.hashOperation(address(ch), 0, data, bytes32(0), bytes32(0));
        vm.expectRevert(
            abi.encodeWithSelector(
                TimelockController.TimelockUnexpectedOperationState.selector, id, bytes32(uint256(1) << 2)
            )
        );
        vm.prank(governor);
        timelock.execute(address(ch), 0, data, bytes32(0), bytes32(0));
        vm.expectRevert(
            abi.encodeWithSelector(
                IAccessControl.AccessControlUnauthorizedAccount.selector, guardian, bytes32(0)
            )
        );
        vm.prank(guardian);
        ch.setOutflowCap(address(usdc), 1);
        assertEq(ch.outflowCap(address(usdc)), BIG_CAP);
    }
}
